"""How much the GPU block costs Pegasus: size per GPU, pegasus-exitcode and parser time and memory.

    python -m bench.record_size [HOURS [BYTES_PER_GPU [RUNS]]]

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
from dataclasses import dataclass
from pathlib import Path

from bench import common
from kickstart_gpu.block_writer import MARKER, render_entries
from kickstart_gpu.monitor import Monitor, Options
from kickstart_gpu.replay import TraceLibrary
from kickstart_gpu.trace_file import load_trace

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
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, code)
"""

PARSE = """
import resource, sys, time
from Pegasus.tools.kickstart_parser import YAMLParser
started, cpu = time.perf_counter(), time.process_time()
entries = YAMLParser(sys.argv[1]).parse_stampede()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(time.perf_counter() - started, time.process_time() - cpu, peak, len(entries))
"""


@dataclass
class Figures:
    """Medians over the runs: wall and CPU seconds; the peak resident MiB."""

    wall: float
    cpu: float
    mib: float


def measured_pair(without: list[str], with_block: list[str], runs: int) -> tuple[Figures, ...]:
    """The two commands run alternately ``runs`` times each, so that the machine's drift
    (these VMs' timings wander by tens of percent) falls on both alike."""
    results: dict[int, list[tuple[float, float, float]]] = {0: [], 1: []}
    for _ in range(runs):
        for index, command in enumerate((without, with_block)):
            out = subprocess.run(command, capture_output=True, text=True,
                                 check=True).stdout.split()
            results[index].append((float(out[0]), float(out[1]), int(out[2]) / 1024))
    return tuple(Figures(statistics.median(r[0] for r in rows),
                         statistics.median(r[1] for r in rows), max(r[2] for r in rows))
                 for rows in results.values())


def main() -> int:
    parser = common.Arguments("record_size", __doc__)
    parser.add_argument("hours", metavar="HOURS", type=common.positive_number, nargs="?",
                        default=24.0)
    parser.add_argument("budget", metavar="BYTES_PER_GPU", type=common.positive, nargs="?",
                        help="another budget than the sidecar's")
    parser.add_argument("runs", metavar="RUNS", type=common.positive, nargs="?", default=15)
    args = parser.parse_args()
    hours, runs = args.hours, args.runs
    if args.budget:
        import kickstart_gpu.block_writer

        kickstart_gpu.block_writer.BYTES_PER_GPU = args.budget
    gpus, interval = 8, 10.0
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        started = time.monotonic()
        block = gpu_block(widened_trace(gpus, directory), int(hours * 3600 / interval), interval)
        made = time.monotonic() - started
        per_gpu = len(block.encode()) / gpus
        print(f"block: {len(block.encode()):,} bytes for {gpus} GPUs, {hours:g} h at "
              f"{interval:g} s = {per_gpu:,.0f} bytes per GPU {common.at_most(per_gpu, 32_000)}; "
              f"built in {made:.1f} s")
        paths = {}
        for name, text in (("without", RECORD.read_text()),
                           ("with", RECORD.read_text() + "\n" + block)):
            paths[name] = directory / name / "job.out"
            paths[name].parent.mkdir()
            paths[name].write_text(text)
        tools = {
            "pegasus-exitcode": [sys.executable, "-c", MEASURE, *exitcode_command(),
                                 "--no-rename"],
            "YAMLParser": [sys.executable, "-c", PARSE]}
        totals = {"without": [0.0, 0.0], "with": [0.0, 0.0]}
        for tool, command in tools.items():
            before, after = measured_pair([*command, str(paths["without"])],
                                          [*command, str(paths["with"])], runs)
            for name, figures in (("without", before), ("with", after)):
                totals[name][0] += figures.wall
                totals[name][1] += figures.cpu
            print(f"{tool}: {before.wall * 1000:.0f} ms ({before.cpu * 1000:.0f} ms CPU), "
                  f"{before.mib:.1f} MiB without the block; {after.wall * 1000:.0f} ms "
                  f"({after.cpu * 1000:.0f} ms CPU), {after.mib:.1f} MiB with it: "
                  f"{after.wall / before.wall:.2f}x, {after.mib - before.mib:+.1f} MiB "
                  f"{common.at_most((after.mib - before.mib) * 2**20 / 1e6, 10, ' MB more')}")
        (wall0, cpu0), (wall1, cpu1) = totals["without"], totals["with"]
        print(f"both, medians of {runs} alternating runs: {wall0 * 1000:.0f} ms without, "
              f"{wall1 * 1000:.0f} ms with the block: {wall1 / wall0:.2f}x "
              f"{common.at_most(wall1 / wall0, 1.25, 'x')}; CPU {cpu0 * 1000:.0f} ms and "
              f"{cpu1 * 1000:.0f} ms: {cpu1 / cpu0:.2f}x {common.at_most(cpu1 / cpu0, 1.25, 'x')}")
    return 0


if __name__ == "__main__":
    common.run(main)
