"""pegasus-kickstart-gpu's costs.

    python -m bench.sidecar [--cpu-seconds 60]

1. start-up: wall time of ``pegasus-kickstart-gpu --backend none -- true`` against
   ``python3 -c pass`` (this environment's python; median of 30 runs each, alternating);
   target ratio <= 1.5 (issue 25).
2. CPU: the sidecar's own CPU time while a job sleeps 60 s, sampling every second from the
   replayed two-GPU trace; target <= 0.5 % of a core.
3. memory: resident set after 100,000 samples against after 100 (in-process, replayed trace);
   target growth <= 5 MiB.
4. with $PEGASUS_HOME: the wall time the sidecar adds in front of the real pegasus-kickstart
   running /bin/true, with --backend auto and replay (median of 30 runs each, the three
   commands alternating); target <= +25 ms each (issue 25).

Runs alternate so that the machine's drift falls on both sides alike; the start-up ratio and
the added times are printed again last.
"""

from __future__ import annotations

import compileall
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Arguments, at_most, positive, run
from kickstart_gpu.monitor import Monitor, Options
from kickstart_gpu.replay import TraceLibrary
from kickstart_gpu.trace_file import load_trace

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
SIDECAR = str(Path(sys.executable).parent / "pegasus-kickstart-gpu")


def median_walls(commands: list[list[str]], runs: int = 30) -> list[float]:
    """Median wall seconds of each command, the commands run in turn ``runs`` times."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, taken in zip(commands, times):
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            taken.append(time.perf_counter() - started)
    return [statistics.median(taken) for taken in times]


def startup() -> str:
    sidecar, python = median_walls([
        [SIDECAR, "--backend", "none", "--output", os.devnull, "--", "true"],
        [sys.executable, "-c", "pass"]])
    print(f"start-up: sidecar {sidecar * 1000:.1f} ms, python3 -c pass {python * 1000:.1f} ms, "
          f"ratio {sidecar / python:.2f} {at_most(sidecar / python, 1.5)}")
    return f"start-up / python3 -c pass = {sidecar / python:.2f} {at_most(sidecar / python, 1.5)}"


def cpu(seconds: int) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run([SIDECAR, "--interval", "1", "--backend", f"replay:{TRACE}", "--output",
                    os.devnull, "--", "sleep", str(seconds)], check=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"cpu: {used:.3f} s of CPU in {wall:.1f} s at a 1 s interval, two GPUs = "
          f"{100 * used / wall:.3f} % of a core {at_most(100 * used / wall, 0.5, ' %')} "
          "(includes `sleep` itself)")


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def memory() -> None:
    frozen = 30.0  # a busy moment of the trace, with job processes on the GPUs
    monitor = Monitor(lambda: TraceLibrary(load_trace(TRACE), clock=lambda: frozen),
                      Options(), {}, os.getpid())
    monitor._start_monitoring()
    for _ in range(100):
        monitor.take_sample()
    early = resident_mib()
    started = time.monotonic()
    for _ in range(100_000 - 100):
        monitor.take_sample()
    late = resident_mib()
    print(f"memory: {early:.1f} MiB after 100 samples, {late:.1f} MiB after 100,000 "
          f"({time.monotonic() - started:.0f} s), growth {late - early:.2f} MiB "
          f"{at_most(late - early, 5, ' MiB')}")


def kickstart_overhead() -> str:
    """The wall time the sidecar adds to a job under the real kickstart (needs PEGASUS_HOME)."""
    home = os.environ.get("PEGASUS_HOME")
    if not home:
        print("added wall time over kickstart alone: set PEGASUS_HOME to measure")
        return "added wall time: not measured (no PEGASUS_HOME)"
    kickstart = [str(Path(home) / "bin" / "pegasus-kickstart"), "-n", "j", "-N", "j", "-R",
                 "local", "/bin/true"]
    backends = ("auto", f"replay:{TRACE}")
    alone, *wrapped = median_walls(
        [kickstart, *([SIDECAR, "--backend", backend, *kickstart] for backend in backends)])
    added = []
    for backend, wall in zip(backends, wrapped):
        name = backend.split(":")[0]
        print(f"added wall time over kickstart alone (--backend {name}): "
              f"{(wall - alone) * 1000:.1f} ms ({alone * 1000:.1f} -> {wall * 1000:.1f} ms,"
              " median of 30, alternating)")
        added.append(f"+{(wall - alone) * 1000:.1f} ms {name} "
                     f"{at_most((wall - alone) * 1000, 25, ' ms')}")
    return f"added wall over kickstart alone: {', '.join(added)}"


def main() -> int:
    parser = Arguments("sidecar", __doc__)
    parser.add_argument("--cpu-seconds", type=positive, default=60)
    args = parser.parse_args()
    # the bytecode pip writes when it installs the package; an editable checkout (and
    # PYTHONDONTWRITEBYTECODE) would otherwise compile the sidecar's modules on every run
    for package in ("kickstart_gpu", "pegasus_globus"):
        compileall.compile_dir(ROOT / package, quiet=1)
    summary = [startup(), kickstart_overhead()]
    memory()
    cpu(args.cpu_seconds)
    print("; ".join(summary))
    return 0


if __name__ == "__main__":
    run(main)
