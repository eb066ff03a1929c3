"""The pre-flight check of a workflow with 10,000 go:// inputs against the emulator.

    python -m bench.preflight [INPUTS]

The inputs are spread over 20 directories of one collection (100 jobs of 100 inputs each,
written with Pegasus.api), the site's scratch is a second collection. Runs
``pegasus-globus-setup check --workflow`` as a user would (a new process: start-up, YAML
parsing and every call included) and prints its wall time and API calls: one listing per
directory, not one request per file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import common
from bench.concurrent_refresh import logged_in_store
from bench.register_timers import calls
from pegasus_globus.emulator import Emulator

DIRECTORIES = 20


def write_workflow(directory: Path, data: str, scratch: str, inputs: int) -> None:
    from Pegasus.api import File, Job, ReplicaCatalog, SiteCatalog, Workflow

    from pegasus_globus.sites import globus_scratch_site

    workflow, catalog = Workflow("big"), ReplicaCatalog()
    for start in range(0, inputs, 100):
        job = Job("step", _id=f"ID{start:06d}")
        for index in range(start, min(start + 100, inputs)):
            name = f"f{index:05d}.dat"
            catalog.add_replica("globus", name, f"go://{data}/d{index % DIRECTORIES:02d}/{name}")
            job.add_inputs(File(name))
        workflow.add_jobs(job)
    workflow.add_replica_catalog(catalog)
    workflow.write(str(directory / "big.yml"))
    SiteCatalog().add_sites(globus_scratch_site("local", scratch, "/scratch")).write(
        str(directory / "sites.yml"))
    (directory / "pegasus.properties").write_text("pegasus.data.configuration = sharedfs\n")


def main() -> int:
    parser = common.Arguments("preflight", __doc__)
    parser.add_argument("inputs", metavar="INPUTS", type=common.positive, nargs="?",
                        default=10_000)
    inputs = parser.parse_args().inputs
    with tempfile.TemporaryDirectory() as scratch_directory:
        root = Path(scratch_directory)
        with Emulator(root / "globus") as emulator:
            data, scratch = str(uuid.uuid4()), str(uuid.uuid4())
            for index in range(inputs):
                directory = emulator.collection_path(data) / f"d{index % DIRECTORIES:02d}"
                directory.mkdir(exist_ok=True)
                (directory / f"f{index:05d}.dat").write_bytes(b"x")
            write_workflow(root, data, scratch, inputs)
            os.environ.update(emulator.environment)  # for the login below
            env = {**os.environ, "HOME": str(root / "home")}
            env.pop("PEGASUS_GLOBUS_CONFIG", None)
            logged_in_store(emulator, root / "home" / ".pegasus" / "globus.conf")
            calls(emulator, reset=True)
            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, "-m", "pegasus_globus.setup_cli", "check", "--workflow",
                 "big.yml", "--sites", "sites.yml", "--conf", "pegasus.properties"],
                capture_output=True, text=True, env=env, cwd=root)
            wall = time.monotonic() - started
            print(result.stdout.strip().splitlines()[-1])
            print(f"{inputs} inputs in {DIRECTORIES} directories: exit {result.returncode}, "
                  f"{calls(emulator)} API calls, {wall:.2f} s "
                  f"(workflow {(root / 'big.yml').stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    common.run(main)
