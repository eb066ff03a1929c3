"""The sidecar under ``condor_starter``: ``condor_rm``, ``condor_hold`` then ``condor_release``,
and ``condor_vacate_job`` of a running job, wrapped (pegasus-kickstart-gpu in front of
pegasus-kickstart, as Pegasus' launcher profile runs it) and under kickstart alone, on the same
pool: the same job-ad outcome and event-log events, no process of the job left behind, and the
record where kickstart keeps its own (the job's output file).

The job starts a background child, traps SIGTERM, and on its second start (after a release or
a vacate) ends at once with 0. All twelve jobs run side by side.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from .conftest import POOL_KILLS

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
SIDECAR = str(Path(sys.executable).parent / "pegasus-kickstart-gpu")
ACTIONS = {"remove": [["condor_rm"]], "hold and release": [["condor_hold"], ["condor_release"]],
           "vacate": [["condor_vacate_job"]]}
JOB = """#!/bin/sh
sleep 300 &
echo $! >> "$1/children"
trap 'echo TERM >> "$1/seen"; exit 143' TERM
[ -e "$1/ran" ] && exit 0
: > "$1/ran"
echo ready > "$1/ready"
i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
"""
EVENT = re.compile(r"^(\d{3}) \(", re.M)
# progress reports, not outcomes: image size (006), job ad information (028), file transfer (040)
PROGRESS = {"006", "028", "040"}


class Trial:
    """One job, wrapped or not, and the action done to it once it runs."""

    def __init__(self, pool, pegasus, action: str, sidecar: bool) -> None:
        self.pool, self.action, self.sidecar = pool, action, sidecar
        self.directory = pool.directory(f"{action.replace(' ', '-')}-{sidecar}")
        script = self.directory / "job.sh"
        script.write_text(JOB)
        script.chmod(0o755)
        kickstart = [str(pegasus.home / "bin" / "pegasus-kickstart"), "-n", "job", "-N", "ID1",
                     "-R", "condorpool", str(script), str(self.directory)]
        command = ([SIDECAR, "--interval", "1", "--backend", f"replay:{TRACE}", *kickstart]
                   if sidecar else kickstart)
        (self.directory / "job.sub").write_text(
            f"universe = vanilla\nexecutable = {command[0]}\n"
            f"arguments = \"{' '.join(command[1:])}\"\n"
            "output = job.out\nerror = job.err\nlog = job.log\n"
            "should_transfer_files = NO\nqueue\n")
        pool.give(self.directory)
        submitted = pool.run(["condor_submit", "job.sub"], cwd=self.directory).stdout
        self.cluster = re.search(r"submitted to cluster (\d+)", submitted).group(1)

    def act_when_running(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (self.directory / "ready").exists():
            assert time.monotonic() < deadline, f"{self.action}: the job never started"
            time.sleep(0.1)
        time.sleep(0.3)  # kickstart and the sidecar are past their start-up
        for command in ACTIONS[self.action]:
            self.pool.run([*command, self.cluster])
            time.sleep(0.5)

    def wait(self) -> None:
        self.pool.wait_for_job(self.directory / "job.log", timeout=120)
        history = self.pool.run(["condor_history", self.cluster, "-af", "JobStatus", "ExitCode",
                                 "NumJobStarts"]).stdout.split()
        self.outcome = history
        self.events = [code for code in EVENT.findall((self.directory / "job.log").read_text())
                       if code not in PROGRESS]
        self.output = (self.directory / "job.out").read_text()
        self.seen = (self.directory / "seen").read_text().split() \
            if (self.directory / "seen").exists() else []

    def leftovers(self) -> list[int]:
        pids = [int(p) for p in (self.directory / "children").read_text().split()]
        return [pid for pid in pids if os.path.exists(f"/proc/{pid}")
                and "sleep" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]


@pytest.fixture(scope="module")
def trials(condor_pool, pool_pegasus):
    made = {(action, sidecar): Trial(condor_pool, pool_pegasus, action, sidecar)
            for action in ACTIONS for sidecar in (False, True)}
    for trial in made.values():
        trial.act_when_running()
    for trial in made.values():
        trial.wait()
        POOL_KILLS[f"{trial.action}, {'sidecar+kickstart' if trial.sidecar else 'kickstart'}"] = (
            f"JobStatus/ExitCode/NumJobStarts {' '.join(trial.outcome)}; events "
            f"{' '.join(trial.events)}; job saw {trial.seen or 'nothing'}; records "
            f"{trial.output.count('- invocation:')}, GPU blocks "
            f"{trial.output.count('---------------pegasus-multipart')}; "
            f"left behind {len(trial.leftovers())}")
    return made


@pytest.mark.parametrize("action", ACTIONS)
def test_the_job_ends_as_under_kickstart_alone(trials, action):
    alone, wrapped = trials[(action, False)], trials[(action, True)]
    assert wrapped.outcome == alone.outcome, (alone.outcome, wrapped.outcome)
    assert wrapped.events == alone.events, (alone.events, wrapped.events)
    assert wrapped.seen == alone.seen == ["TERM"]  # the soft kill reached the job once


@pytest.mark.parametrize("action", ACTIONS)
def test_no_process_of_the_job_is_left_behind(trials, action):
    for sidecar in (False, True):
        assert trials[(action, sidecar)].leftovers() == [], sidecar


@pytest.mark.parametrize("action", ACTIONS)
def test_the_record_is_where_kickstart_keeps_its_own(trials, action):
    alone, wrapped = trials[(action, False)], trials[(action, True)]
    invocations = alone.output.count("- invocation:")
    assert invocations >= 1 and wrapped.output.count("- invocation:") == invocations
    assert wrapped.output.count("---------------pegasus-multipart") == invocations
