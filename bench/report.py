"""Report the GPU use of a large workflow's submit directory: 100,000 records by default.

    python -m bench.report [RECORDS]

Writes RECORDS ``.out`` files into a submit-directory layout (``00/00``, ``00/01``, ...): a real
kickstart record with a one-GPU block of 50 samples from the replayed trace, and every 100th a
real clustered job from the personal pool (four tasks, five blocks: tests/fixtures/kickstart/
clustered_gpu_tasks.out). Then times ``pegasus-kickstart-gpu report DIR --format json`` in a
process of its own and reads its peak RSS. Targets: 100,000 records in under 20 s, memory
bounded (a row per job is what it keeps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from kickstart_gpu.block_writer import MARKER, render_entries
from kickstart_gpu.monitor import Monitor, Options
from kickstart_gpu.replay import TraceLibrary
from kickstart_gpu.trace_file import load_trace

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
RECORD = ROOT / "tests" / "fixtures" / "kickstart" / "success_ls.out"
CLUSTERED = ROOT / "tests" / "fixtures" / "kickstart" / "clustered_gpu_tasks.out"
CLUSTER_EVERY = 100
FILES_PER_DIRECTORY = 1000  # as Pegasus' submit directories hold them


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


def write_submit_dir(root: Path, records: int) -> int:
    """The records, as bytes written once each; returns their total size."""
    single = (RECORD.read_text() + block()).encode()
    clustered = CLUSTERED.read_bytes()
    size = 0
    for index in range(records):
        directory = root / f"{index // FILES_PER_DIRECTORY // 100:02d}" / \
            f"{index // FILES_PER_DIRECTORY % 100:02d}"
        if index % FILES_PER_DIRECTORY == 0:
            directory.mkdir(parents=True, exist_ok=True)
        if index % CLUSTER_EVERY == CLUSTER_EVERY - 1:
            name, text = f"merge_task_PID{index}_ID1.out.000", clustered
        else:
            name, text = f"train_ID{index:07d}.out.000", single
        (directory / name).write_bytes(text)
        size += len(text)
    return size


def timed_report(directory: Path) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (MB) and the report's totals."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "kickstart_gpu.cli", "report",
                                str(directory), "--format", "json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    output = process.stdout.read()
    error = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    if process.returncode:
        raise SystemExit(error.decode())
    return elapsed, usage.ru_maxrss / 1024, json.loads(output)["totals"]


def main() -> int:
    parser = common.Arguments("report", __doc__)
    parser.add_argument("records", metavar="RECORDS", type=common.positive, nargs="?",
                        default=100_000)
    records = parser.parse_args().records
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        started = time.monotonic()
        size = write_submit_dir(Path(scratch), records)
        print(f"{records} records ({records // CLUSTER_EVERY} clustered), {size / 1e6:.0f} MB, "
              f"written in {time.monotonic() - started:.1f} s")
        elapsed, rss, totals = timed_report(Path(scratch))
        expected_rows = records - records // CLUSTER_EVERY + 5 * (records // CLUSTER_EVERY)
        print(f"rows: {totals['jobs_with_gpu_events']} jobs with GPU events, tasks "
              f"{totals['tasks']} (expected {expected_rows - records // CLUSTER_EVERY}), "
              f"{totals['gpu_hours']:.1f} GPU-hours")
        print(f"report: {elapsed:.1f} s for {records} records, {records / elapsed:,.0f} "
              f"records/s, peak RSS {rss:.0f} MB (target: 100,000 in < 20 s)")
    return 0


if __name__ == "__main__":
    common.run(main)
