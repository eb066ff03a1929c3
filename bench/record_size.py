"""How much the GPU block costs Pegasus: size per GPU, pegasus-exitcode and parser time and memory.

    python -m bench.record_size [HOURS [BYTES_PER_GPU]]

An 8-GPU job sampled every 10 s for HOURS (default 24) through the sidecar's own monitor (the
two-A100 trace widened to eight GPUs, on an emulated clock), its block appended to a real
kickstart record (tests/fixtures/kickstart/success_ls.out); then pegasus-exitcode (the real
one from $PEGASUS_HOME, else the pip-installed Pegasus) and Pegasus' YAMLParser read the record
with and without the block. Targets: at most 32 KB per GPU; exitcode and the parser within
1.25x the time and +10 MB of the record without the block.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
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


def widened_trace(gpus: int, directory: Path) -> Path:
    """The two-A100 trace with ``gpus`` devices (each a copy of one of the two)."""
    trace = json.loads(TRACE.read_text())
    devices = []
    for index in range(gpus):
        device = copy.deepcopy(trace["devices"][index % 2])
        device["uuid"] = f"GPU-{index:08x}-0000-4000-8000-000000000000"
        device["pci_bus_id"] = f"00000000:{index + 1:02X}:00.0"
        devices.append(device)
    trace["devices"] = devices
    for sample in trace["samples"]:
        sample["devices"] = [copy.deepcopy(sample["devices"][i % 2]) for i in range(gpus)]
    path = directory / f"trace-{gpus}.json"
    path.write_text(json.dumps(trace))
    return path


def gpu_block(trace: Path, samples: int, interval: float = 10.0,
              environ: dict[str, str] | None = None) -> str:
    """The block the sidecar writes after ``samples`` samples ``interval`` seconds apart."""
    clock = [0.0]
    loaded = load_trace(str(trace))
    monitor = Monitor(lambda: TraceLibrary(loaded, clock=lambda: clock[0] % 1200),
                      Options(interval=interval), environ or {}, os.getpid())
    monitor._start_monitoring()
    for _ in range(samples):
        monitor.take_sample()
        clock[0] += interval
    return f"{MARKER}\n{render_entries(monitor.finish())}"


def exitcode_command() -> list[str]:
    home = os.environ.get("PEGASUS_HOME")
    if home and (Path(home) / "bin" / "pegasus-exitcode").exists():
        return [str(Path(home) / "bin" / "pegasus-exitcode")]
    import Pegasus

    return [sys.executable, str(Path(Pegasus.__file__).parent / "cli" / "pegasus-exitcode.py")]


MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.run(sys.argv[1:], capture_output=True).returncode
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""

PARSE = """
import resource, sys, time
from Pegasus.tools.kickstart_parser import YAMLParser
started = time.perf_counter()
entries = YAMLParser(sys.argv[1]).parse_stampede()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(time.perf_counter() - started, peak, len(entries))
"""


def measured(command: list[str], runs: int = 5) -> tuple[float, float]:
    """Median seconds and peak MiB of a command."""
    results = []
    for _ in range(runs):
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
        results.append((float(out[0]), int(out[1]) / 1024))
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def main(argv: list[str]) -> int:
    hours = float(argv[0]) if argv else 24.0
    if len(argv) > 1:  # try another budget than the sidecar's
        import kickstart_gpu.block_writer

        kickstart_gpu.block_writer.BYTES_PER_GPU = int(argv[1])
    gpus, interval = 8, 10.0
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        started = time.monotonic()
        block = gpu_block(widened_trace(gpus, directory), int(hours * 3600 / interval), interval)
        made = time.monotonic() - started
        per_gpu = len(block.encode()) / gpus
        print(f"block: {len(block.encode()):,} bytes for {gpus} GPUs, {hours:g} h at "
              f"{interval:g} s = {per_gpu:,.0f} bytes per GPU (the issue's target: <= 32,000); "
              f"built in {made:.1f} s")
        rows = {}
        for name, text in (("without", RECORD.read_text()),
                           ("with", RECORD.read_text() + "\n" + block)):
            path = directory / name / "job.out"
            path.parent.mkdir()
            path.write_text(text)
            exitcode = measured([sys.executable, "-c", MEASURE, *exitcode_command(),
                                 "--no-rename", str(path)])
            parser = measured([sys.executable, "-c", PARSE, str(path)])
            rows[name] = (exitcode, parser)
        for tool, index in (("pegasus-exitcode", 0), ("YAMLParser", 1)):
            (t0, m0), (t1, m1) = rows["without"][index], rows["with"][index]
            print(f"{tool}: {t0 * 1000:.0f} ms, {m0:.1f} MiB without the block; "
                  f"{t1 * 1000:.0f} ms, {m1:.1f} MiB with it: {t1 / t0:.2f}x, "
                  f"{m1 - m0:+.1f} MiB")
        before = sum(rows["without"][i][0] for i in (0, 1))
        after = sum(rows["with"][i][0] for i in (0, 1))
        print(f"both: {before * 1000:.0f} ms without, {after * 1000:.0f} ms with the block: "
              f"{after / before:.2f}x (target <= 1.25x)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
