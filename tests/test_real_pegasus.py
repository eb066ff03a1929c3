"""The example workflows planned by the real pegasus-plan and run by pegasus-run, with the real
pegasus-kickstart, pegasus-transfer and pegasus-exitcode, against the Globus emulator.

Pegasus is found as a user's machine has it ($PEGASUS_HOME, else pegasus-plan on PATH); these
tests are skipped without it, and fail without it under CI (CI=true), where .ci/run unpacks
the installation from ../shared/pegasus/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
import yaml

from bench.concurrent_refresh import logged_in_store
from pegasus_globus.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from rehearsal import RealPegasus, nightly_backup  # noqa: E402

TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
DAY = 86400


class NightlySite:
    """The emulator with the site's shared scratch exposed as a collection, a login, the data,
    results and archive collections, and the nightly_backup workflow written for site local."""

    def __init__(self, pegasus: RealPegasus, tmp_path: Path, monkeypatch,
                 with_input: bool = True) -> None:
        self.tmp = tmp_path
        self.data, self.results, self.archive = (str(uuid.uuid4()) for _ in range(3))
        self.emulator = Emulator(tmp_path / "globus", time_scale=DAY).start()
        for name, value in self.emulator.environment.items():
            monkeypatch.setenv(name, value)
        home = tmp_path / "home"
        logged_in_store(self.emulator, home / ".pegasus" / "globus.conf")
        self.env = pegasus.environment({**os.environ, **self.emulator.environment,
                                        "HOME": str(home)})
        self.env.pop("PEGASUS_GLOBUS_CONFIG", None)
        self.raw = "".join(f"{i},{i * i}\n" for i in range(100))
        if with_input:
            (self.emulator.collection_path(self.data) / "data").mkdir()
            (self.emulator.collection_path(self.data) / "data" / "raw.csv").write_text(self.raw)
        self.workflow, self.properties = nightly_backup(
            pegasus, self.emulator, tmp_path / "wf", self.data, self.results, self.archive)
        self.scratch = tmp_path / "wf" / "scratch"

    def plan_and_run(self, pegasus: RealPegasus, submit: str = "submit"):
        plan = pegasus.plan(self.workflow, self.properties, self.tmp / submit, self.env,
                            output_site="results")
        assert plan.returncode == 0 and plan.submit_dir, plan.output[-3000:]
        return plan, pegasus.run(plan.submit_dir, self.env)

    def close(self) -> None:
        self.emulator.close()


@pytest.fixture
def nightly(pegasus, tmp_path, monkeypatch):
    site = NightlySite(pegasus, tmp_path, monkeypatch)
    yield site
    site.close()


def job_states(submit_dir: Path) -> dict[str, list[str]]:
    """jobstate.log as job -> its states, in order."""
    states: dict[str, list[str]] = {}
    for line in (submit_dir / "jobstate.log").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[1] not in ("INTERNAL", "***"):
            states.setdefault(fields[1], []).append(fields[2])
    return states


def exitcode(pegasus: RealPegasus, record: Path) -> int:
    return pegasus.exitcode(record.read_text()).returncode


def test_planned_remove_specs_carry_recursive_as_strings(pegasus, nightly):
    """What the planner writes, which pegasus-globus-online must accept (see test_online)."""
    plan = pegasus.plan(nightly.workflow, nightly.properties, nightly.tmp / "submit",
                        nightly.env, output_site="results")
    cleanup = [json.loads(p.read_text()) for p in plan.submit_dir.rglob("cleanup_*.in")]
    assert {entry["target"]["recursive"] for spec in cleanup for entry in spec} <= {"True",
                                                                                     "False"}
    assert yaml.safe_load((nightly.tmp / "wf" / "sites.yml").read_text())["sites"]


@pytest.mark.parametrize("engine", ["pool", "shell"])
def test_the_demo_plans_and_runs_both_workflows_with_the_real_pegasus(pegasus, tmp_path, engine):
    """With HTCondor (CI has it) the demo starts its own pool and submits both workflows to
    DAGMan; without it, the Shell code generator's fallback."""
    env = {**os.environ, "PEGASUS_HOME": str(pegasus.home)}
    if engine == "shell":
        env.pop("CONDOR_CONFIG", None)
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                      if not (Path(p) / "condor_submit_dag").exists())
    elif "CONDOR_CONFIG" not in env:
        pytest.skip("no HTCondor (CONDOR_CONFIG) for the demo's pool")
    else:  # where the pool's account can reach it (pytest's directories are private)
        tmp_path = Path(tempfile.mkdtemp(prefix="demo-"))
        tmp_path.chmod(0o755)
    try:
        result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--output",
                                 str(tmp_path / "out")], capture_output=True, text=True,
                                timeout=600, cwd=tmp_path, env=env)
    finally:
        if engine == "pool":
            shutil.rmtree(tmp_path, ignore_errors=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for workflow in ("nightly_backup", "gpu_training"):
        checked = out.index(f"- pegasus-globus-setup check --workflow out/{workflow}/")
        assert checked < out.index(f"- pegasus-plan {workflow}")  # checked before planning
        assert f"- pegasus-plan {workflow}" in out
        if engine == "pool":
            assert f"- DAGMan ran {workflow} on the pool" in out
        else:
            assert f"- pegasus-run {workflow}:" in out
    if engine == "pool":
        assert "personal HTCondor pool started" in out and "- personal pool stopped" in out
        assert out.count("Success") >= 2  # pegasus-status, once per workflow
        assert "Workflow wall time" in out  # pegasus-statistics
        assert "pool stopped" in out
    else:
        assert "no HTCondor" in out
        assert "JOB stage_in_local_local_0_0 Returned with 0" in out  # pegasus-run's lines
        assert "JOB train_train Returned with 0" in out
    assert "it ran 3 nights" in out and "registering again: unchanged" in out
    assert "- pegasus-kickstart-gpu report" in out and "Top by GPU-hours: train_train" in out
