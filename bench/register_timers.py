"""Register the timers of a workflow with 10,000 files, twice.

    python -m bench.register_timers [FILES]

The files carry timer metadata spread over 3 collection pairs and 2 schedules (one job per
100 files, written with Pegasus.api). Prints timers created, API calls and wall time for each
run; the second run must create nothing.
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

from bench.concurrent_refresh import logged_in_store
from pegasus_globus.emulator import Emulator
from pegasus_globus.timers.cli import main as timer_cli


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
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        started = time.monotonic()
        write_workflow(root / "big.yml", files)
        print(f"workflow with {files} files written in {time.monotonic() - started:.1f} s "
              f"({(root / 'big.yml').stat().st_size / 1e6:.1f} MB)")
        with Emulator(root / "globus") as emulator:
            os.environ.update(emulator.environment, HOME=str(root / "home"))
            logged_in_store(emulator, root / "home" / ".pegasus" / "globus.conf")
            for attempt in ("first", "second"):
                calls(emulator, reset=True)
                started = time.monotonic()
                timer_cli(["register", str(root / "big.yml"), "--format", "json"])
                wall = time.monotonic() - started
                print(f"{attempt} run: {len(emulator.state['timers'])} timers exist, "
                      f"{calls(emulator)} API calls, {wall:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
