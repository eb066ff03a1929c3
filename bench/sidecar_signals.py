"""Kill modes against the real pegasus-kickstart, with and without the sidecar in front.

    python -m bench.sidecar_signals [TRIALS]      (needs PEGASUS_HOME; default 200 trials)

For each mode, a job under kickstart (alone, or under pegasus-kickstart-gpu as Pegasus'
launcher runs it) gets SIGTERM: sent to the top process alone (HTCondor's soft kill), to its
process group (``kill -TERM -- -PGID``, ``timeout``), or to every process of the tree in pid
order (how a cgroup kill, Slurm's, reaches a job). Counted: records lost (kickstart's record,
and the GPU block with the sidecar), how many times the job saw the signal, and the exit
statuses. The job traps SIGTERM, writes a line per signal it sees and exits 143.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from bench.common import descendants

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
SIDECAR = str(Path(sys.executable).parent / "pegasus-kickstart-gpu")
MODES = ("top process", "process group", "every process")
# a script file: kickstart expands $VARIABLES in its arguments itself
JOB = """echo ready > {ready}
trap 'echo TERM >> {seen}; sleep 0.2; exit 143' TERM
i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
"""


def trial(kickstart: str, mode: str, sidecar: bool, directory: Path) -> tuple[bool, int, int]:
    """(record complete, times the job saw SIGTERM, exit status as the parent sees it)."""
    ready, seen = directory / "ready", directory / "seen"
    for path in (ready, seen):
        path.unlink(missing_ok=True)
    script = directory / "job.sh"
    script.write_text(JOB.format(ready=ready, seen=seen))
    command = [kickstart, "-n", "job", "-N", "ID1", "-R", "local", "/bin/sh", str(script)]
    if sidecar:
        command = [SIDECAR, "--interval", "1", "--backend", f"replay:{TRACE}", *command]
    # kickstart's $TMPDIR/ks.* files, which a kill leaves, go with the trials' directory
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               start_new_session=True, cwd=directory,
                               env={**os.environ, "TMPDIR": str(directory)})
    deadline = time.monotonic() + 20
    while not ready.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"the job did not start: {' '.join(command)}")
        time.sleep(0.01)
    time.sleep(0.05)
    if mode == "top process":
        os.kill(process.pid, signal.SIGTERM)
    elif mode == "process group":
        os.killpg(process.pid, signal.SIGTERM)
    else:
        for pid in descendants(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    text = out.decode(errors="replace")
    complete = "- invocation:" in text and (not sidecar or "pegasus-multipart" in text)
    times = len(seen.read_text().splitlines()) if seen.exists() else 0
    return complete, times, process.returncode


def run(kickstart: str, trials: int) -> dict[tuple[str, bool], dict[str, object]]:
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode in MODES:
            for sidecar in (False, True):
                outcomes = [trial(kickstart, mode, sidecar, Path(scratch)) for _ in range(trials)]
                results[(mode, sidecar)] = {
                    "lost": sum(not complete for complete, _, _ in outcomes),
                    "seen": collections.Counter(times for _, times, _ in outcomes),
                    "status": collections.Counter(status for _, _, status in outcomes)}
    return results


def main() -> int:
    parser = common.Arguments("sidecar_signals", __doc__)
    parser.add_argument("trials", metavar="TRIALS", type=common.positive, nargs="?", default=200)
    trials = parser.parse_args().trials
    home = os.environ.get("PEGASUS_HOME")
    if not home:
        print("set PEGASUS_HOME to a Pegasus installation (the real pegasus-kickstart)")
        return 2
    started = time.monotonic()
    for (mode, sidecar), row in run(str(Path(home) / "bin" / "pegasus-kickstart"),
                                    trials).items():
        seen = ", ".join(f"{n}x: {c}" for n, c in sorted(row["seen"].items()))
        status = ", ".join(f"{s}: {c}" for s, c in sorted(row["status"].items()))
        print(f"{mode:<14} {'sidecar+kickstart' if sidecar else 'kickstart alone':<18} "
              f"records lost {row['lost']}/{trials}; job saw SIGTERM {seen}; exit {status}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    common.run(main)
