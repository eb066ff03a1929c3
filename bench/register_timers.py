"""Register the timers of a workflow with N files, twice, for each N.

    python -m bench.register_timers [N ...]   (default 1000 10000 100000)

The files carry timer metadata spread over 3 collection pairs and 2 schedules (one job per
100 files, written with Pegasus.api; the timers start tomorrow, so no run competes with the
measurement). Runs ``pegasus-globus-timer register`` twice per workflow and prints, for each
run, the timers that exist, the API calls, the wall time and the peak resident memory; the
second run must create nothing, with one API call. The last line is the curve's growth.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from bench import common
from bench.concurrent_refresh import logged_in_store
from bench.scaling import run_measured
from pegasus_globus.emulator import Emulator

TIMER_CLI = str(Path(sys.executable).parent / "pegasus-globus-timer")
START = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 86400))


def write_workflow(path: Path, files: int) -> None:
    from Pegasus.api import File, Job, ReplicaCatalog, Workflow

    pairs = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(3)]
    workflow, catalog = Workflow("big"), ReplicaCatalog()
    for start in range(0, files, 100):
        job = Job("step", _id=f"ID{start:06d}")
        source, destination = pairs[(start // 100) % 3]
        interval = "1d" if (start // 100) % 2 else "8h"
        for index in range(start, min(start + 100, files)):
            data = File(f"f{index:05d}.dat")
            catalog.add_replica("globus", data, f"go://{source}/data/f{index:05d}.dat")
            data.add_metadata(**{"globus.timer.interval": interval,
                                 "globus.timer.start": START,
                                 "globus.timer.destination": f"go://{destination}/backup/"})
            job.add_inputs(data)
        workflow.add_jobs(job)
    workflow.add_replica_catalog(catalog)
    workflow.write(str(path))


def calls(emulator: Emulator, reset: bool = False) -> int:
    request = urllib.request.Request(emulator.url + "_emulator/stats",
                                     method="DELETE" if reset else "GET")
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)["total"]


def main() -> int:
    parser = common.Arguments("register_timers", __doc__)
    parser.add_argument("sizes", metavar="N", type=common.positive, nargs="*",
                        default=[1000, 10_000, 100_000])
    sizes = list(dict.fromkeys(parser.parse_args().sizes))  # each once
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        with Emulator(root / "globus") as emulator:
            os.environ.update(emulator.environment)
            env = {**os.environ, "HOME": str(root / "home")}
            env.pop("PEGASUS_GLOBUS_CONFIG", None)
            logged_in_store(emulator, root / "home" / ".pegasus" / "globus.conf")
            for files in sizes:
                workflow = root / f"wf-{files}.yml"
                started = time.monotonic()
                write_workflow(workflow, files)
                print(f"workflow with {files} files written in {time.monotonic() - started:.1f}"
                      f" s ({workflow.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
                for attempt in ("first", "second"):
                    calls(emulator, reset=True)
                    wall, mib, _ = run_measured(
                        [TIMER_CLI, "register", str(workflow), "--format", "json"], env)
                    rows.append((files, attempt, len(emulator.state["timers"]),
                                 calls(emulator), wall, mib))
    print(f"{'files':>7} {'run':<7}{'timers':>7}{'calls':>7}{'wall s':>8}{'peak MiB':>10}")
    for files, attempt, timers, api_calls, wall, mib in rows:
        print(f"{files:>7} {attempt:<7}{timers:>7}{api_calls:>7}{wall:>8.2f}{mib:>10.1f}")
    first = {f: w for f, a, _, _, w, _ in rows if a == "first"}
    growth = ", ".join(f"{small}->{big}: x{first[big] / first[small] / (big / small):.2f}"
                       for small, big in zip(sizes, sizes[1:]))
    second_calls = sorted({c for _, a, _, c, _, _ in rows if a == "second"})
    verdict = "holds" if second_calls == [1] else "MISSED"
    print(f"second runs: {second_calls} API call(s) (target [1]: {verdict}); first run's time "
          f"growth per file over linear: {growth or 'one size only'}")
    return 0


if __name__ == "__main__":
    common.run(main)
