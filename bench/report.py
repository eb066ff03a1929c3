"""Report the GPU use of 10,000 job records of 50 samples each.

    python -m bench.report [FILES]

Writes FILES .out files (a real kickstart record with a one-GPU block of 50 samples from the
replayed trace) into a submit-directory layout, then times ``pegasus-kickstart-gpu report``
on it. Target: under 30 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kickstart_gpu.block_writer import MARKER, render_entries
from kickstart_gpu.monitor import Monitor, Options
from kickstart_gpu.replay import TraceLibrary, load_trace

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
RECORD = ROOT / "tests" / "fixtures" / "kickstart" / "success_ls.out"


def block(samples: int = 50) -> str:
    now = [0.0]
    monitor = Monitor(lambda: TraceLibrary(load_trace(TRACE), clock=lambda: now[0]),
                      Options(max_samples=samples), {"CUDA_VISIBLE_DEVICES": "0"}, os.getpid())
    monitor._start_monitoring()
    for second in range(samples):
        now[0] = float(second * 2)
        monitor.take_sample()
    monitor.stop(0)
    return f"{MARKER}\n{render_entries(monitor.finish())}"


def main() -> int:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    text = RECORD.read_text() + block()
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(files):
            directory = Path(scratch, f"{index // 1000:02d}", "00")
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"train_ID{index:06d}.out.000").write_text(text)
        size = sum(f.stat().st_size for f in Path(scratch).rglob("*.out.000"))
        print(f"{files} records, {size / 1e6:.0f} MB, {len(text)} bytes each")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "kickstart_gpu.cli", "report", scratch,
                                 "--format", "json"], capture_output=True, text=True)
        elapsed = time.monotonic() - started
        if result.returncode:
            raise SystemExit(result.stderr)
        print(f"report: {elapsed:.1f} s for {files} records (target < 30 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
