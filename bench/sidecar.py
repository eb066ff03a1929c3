"""pegasus-kickstart-gpu's costs.

    python -m bench.sidecar [--cpu-seconds 60]

1. start-up: wall time of ``pegasus-kickstart-gpu --backend none -- true`` against
   ``python3 -c pass`` (median of 30 runs each); target ratio <= 2.0.
2. CPU: the sidecar's own CPU time while a job sleeps 60 s, sampling every second from the
   replayed two-GPU trace; target <= 0.5 % of a core.
3. memory: resident set after 100,000 samples against after 100 (in-process, replayed trace);
   target growth <= 5 MiB.
4. with $PEGASUS_HOME: the wall time the sidecar adds in front of the real pegasus-kickstart
   running /bin/true (median of 30 runs each).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from kickstart_gpu.monitor import Monitor, Options
from kickstart_gpu.replay import TraceLibrary, load_trace

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
SIDECAR = str(Path(sys.executable).parent / "pegasus-kickstart-gpu")


def median_wall(command: list[str], runs: int = 30) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def startup() -> None:
    sidecar = median_wall([SIDECAR, "--backend", "none", "--output", os.devnull, "--", "true"])
    python = median_wall([sys.executable, "-c", "pass"])
    print(f"start-up: sidecar {sidecar * 1000:.1f} ms, python3 -c pass {python * 1000:.1f} ms, "
          f"ratio {sidecar / python:.2f} (target <= 2.0)")


def cpu(seconds: int) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run([SIDECAR, "--interval", "1", "--backend", f"replay:{TRACE}", "--output",
                    os.devnull, "--", "sleep", str(seconds)], check=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"cpu: {used:.3f} s of CPU in {wall:.1f} s at a 1 s interval, two GPUs = "
          f"{100 * used / wall:.3f} % of a core (target <= 0.5 %; includes `sleep` itself)")


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
          f"({time.monotonic() - started:.0f} s), growth {late - early:.2f} MiB (target <= 5)")


def kickstart_overhead() -> None:
    """The wall time the sidecar adds to a job under the real kickstart (needs PEGASUS_HOME)."""
    home = os.environ.get("PEGASUS_HOME")
    if not home:
        print("added wall time over kickstart alone: set PEGASUS_HOME to measure")
        return
    kickstart = [str(Path(home) / "bin" / "pegasus-kickstart"), "-n", "j", "-N", "j", "-R",
                 "local", "/bin/true"]
    alone = median_wall(kickstart)
    for backend in ("auto", f"replay:{TRACE}"):
        wrapped = median_wall([SIDECAR, "--backend", backend, *kickstart])
        print(f"added wall time over kickstart alone (--backend {backend.split(':')[0]}): "
              f"{(wrapped - alone) * 1000:.1f} ms ({alone * 1000:.1f} -> {wrapped * 1000:.1f} ms,"
              " median of 30)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-seconds", type=int, default=60)
    args = parser.parse_args()
    startup()
    kickstart_overhead()
    memory()
    cpu(args.cpu_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
