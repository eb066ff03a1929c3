"""The example workflows planned by the real pegasus-plan and run by pegasus-run, with the real
pegasus-kickstart, pegasus-transfer and pegasus-exitcode, against the Globus emulator.

Pegasus is found as a user's machine has it ($PEGASUS_HOME, else pegasus-plan on PATH); these
tests are skipped without it, and fail without it under CI (CI=true), where .ci/run unpacks
the installation from ../shared/pegasus/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from bench.concurrent_refresh import logged_in_store
from pegasus_globus.emulator import Emulator

from .conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from rehearsal import RealPegasus, example, gpu_training, local_site, nightly_backup  # noqa: E402

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


def test_nightly_backup_runs_end_to_end_through_our_handler(pegasus, nightly):
    plan, run = nightly.plan_and_run(pegasus)
    assert run.returncode == 0, run.output[-4000:]
    states = job_states(plan.submit_dir)
    assert sorted(states) == ["analyse_analyse", "cleanup_nightly-backup_0_local",
                              "create_dir_nightly-backup_0_local",
                              "pegasus-globus-timer_register_globus_timers",
                              "stage_in_local_local_0_0", "stage_out_local_local_0_0"]
    assert all(s[-1] == "POST_SCRIPT_SUCCESS" for s in states.values()), states
    for record in plan.submit_dir.rglob("*.out.000"):
        assert exitcode(pegasus, record) == 0, record
    results = nightly.emulator.collection_path(nightly.results) / "nightly"
    rows = [line.split(",") for line in nightly.raw.splitlines()]
    expected = f"rows: {len(rows)}\nsum of y: {sum(float(y) for _, y in rows):g}\n"
    assert (results / "summary.txt").read_text() == expected
    assert expected.splitlines()[0] in (results / "report.html").read_text()
    assert not any(nightly.scratch.rglob("raw.csv")), "scratch was not cleaned up"
    transfers = [json.loads(path.read_text()) for path in plan.submit_dir.rglob("*.in")]
    urls = [url["url"] for spec in transfers for entry in spec
            for url in entry.get("src_urls", []) + entry.get("dest_urls", [])
            + ([entry["target"]] if "target" in entry else [])]
    assert urls and all(url.startswith("go://") for url in urls), urls

    timers = nightly.emulator.state["timers"]
    assert len(timers) == 1
    archive = nightly.emulator.collection_path(nightly.archive) / "backups" / "nightly"
    timer = next(iter(timers.values()))
    # the scheduler clears next_run once the end condition is met: no run can follow
    wait_for(lambda: timer["next_run"] is None and timer["number_of_runs"] >= 3, timeout=60)
    assert timer["number_of_runs"] == 3
    assert (archive / "summary.txt").read_text() == expected

    _, again = nightly.plan_and_run(pegasus, submit="submit-again")
    assert again.returncode == 0, again.output[-4000:]
    assert len(nightly.emulator.state["timers"]) == 1, "a second run created a second timer"


def test_a_missing_go_input_fails_the_stage_in_job_fast(pegasus, tmp_path, monkeypatch):
    site = NightlySite(pegasus, tmp_path, monkeypatch, with_input=False)
    try:
        plan, run = site.plan_and_run(pegasus)
    finally:
        site.close()
    assert run.returncode != 0
    assert run.seconds < 60, f"the missing input took {run.seconds:.0f} s to fail"
    stage_in = next(plan.submit_dir.rglob("stage_in_*.out.000")).read_text()
    assert "FILE_NOT_FOUND" in stage_in and "/data/raw.csv" in stage_in
    assert exitcode(pegasus, next(plan.submit_dir.rglob("stage_in_*.out.000"))) != 0
    assert "analyse" not in "".join(job_states(plan.submit_dir))


def gpu_run(pegasus: RealPegasus, tmp_path: Path, exit_code: int = 0):
    workflow, properties = gpu_training(pegasus, tmp_path / "wf", TRACE, exit_code=exit_code)
    env = pegasus.environment({**os.environ, "HOME": str(tmp_path / "home")})
    plan = pegasus.plan(workflow, properties, tmp_path / "submit", env)
    assert plan.returncode == 0 and plan.submit_dir, plan.output[-3000:]
    return plan, pegasus.run(plan.submit_dir, env)


def gpu_entries(record: Path) -> tuple[dict, dict]:
    from Pegasus.tools.kickstart_parser import YAMLParser

    entries = YAMLParser(str(record)).parse_stampede()
    invocation = next(e for e in entries if e.get("invocation"))
    gpu = {k: v for e in entries if e.get("multipart") for k, v in e.items() if k != "multipart"}
    return invocation, gpu


def test_gpu_training_runs_under_the_launcher_in_front_of_real_kickstart(pegasus, tmp_path):
    plan, run = gpu_run(pegasus, tmp_path)
    assert run.returncode == 0, run.output[-4000:]
    script = next(plan.submit_dir.glob("*.sh")).read_text()
    assert 'pegasus-kickstart-gpu "--interval 1 --backend replay:' in script
    record = next(plan.submit_dir.rglob("train_*.out.000"))
    text = record.read_text()
    assert "hostaddr:" in text and "---------------pegasus-multipart" in text  # real kickstart
    invocation, gpu = gpu_entries(record)
    assert invocation["exitcode"] == 0
    assert gpu["kickstart.inv.gpu.environment"]["device_count"] == 2
    assert exitcode(pegasus, record) == 0
    report = subprocess.run([sys.executable, "-m", "kickstart_gpu.cli", "report",
                             str(plan.submit_dir), "--format", "json"],
                            capture_output=True, text=True, check=True)
    jobs = json.loads(report.stdout)["jobs"]
    assert [job["job"] for job in jobs] == ["train_train"]
    assert jobs[0]["gpus"].count("NVIDIA A100") == 2


def test_a_failing_gpu_job_fails_exactly_as_without_the_sidecar(pegasus, tmp_path):
    plan, run = gpu_run(pegasus, tmp_path, exit_code=3)
    assert run.returncode != 0
    record = next(plan.submit_dir.rglob("train_*.out.000"))
    invocation, gpu = gpu_entries(record)
    assert invocation["exitcode"] == 3 and gpu  # the block is still there
    without = record.with_name("without-block.out")
    without.write_text(record.read_text().split("---------------pegasus-multipart")[0])
    assert exitcode(pegasus, record) == exitcode(pegasus, without) == 1


def test_the_condor_plan_puts_the_launcher_in_front_of_kickstart(pegasus, tmp_path):
    """The default code generator: the .sub runs the launcher with kickstart as its first
    argument and asks HTCondor for the GPU. condor_submit_dag is only needed to plan (the
    planner runs it with -no_submit); a stand-in here, since HTCondor is not installed."""
    from local_dagman import condor_submit_dag_stand_in
    from Pegasus.api import SiteCatalog

    workflow = example("gpu_training").build(tmp_path / "wf", interval=5)  # on condorpool
    pool = local_site(tmp_path / "pool", tmp_path / "pool-out", name="condorpool")
    pool.add_pegasus_profile(style="condor").add_condor_profile(universe="vanilla")
    pool.add_env(PEGASUS_HOME=str(pegasus.home))
    SiteCatalog().add_sites(local_site(tmp_path / "scratch", tmp_path / "outputs"), pool).write(
        str(tmp_path / "sites.yml"))
    properties = pegasus.write_properties(tmp_path / "pegasus.properties", tmp_path / "sites.yml",
                                          **{"pegasus.code.generator": "condor"})
    env = pegasus.environment({**os.environ, "HOME": str(tmp_path / "home")})
    env["PATH"] = f"{condor_submit_dag_stand_in(tmp_path / 'condor')}{os.pathsep}{env['PATH']}"
    plan = pegasus.plan(workflow, properties, tmp_path / "submit", env, site="condorpool")
    assert plan.returncode == 0, plan.output[-3000:]
    submit = next(tmp_path.joinpath("submit").rglob("train_train.sub")).read_text()
    settings = dict(line.split(" = ", 1) for line in submit.splitlines() if " = " in line)
    assert settings["executable"].endswith("pegasus-kickstart-gpu")
    arguments = settings["arguments"].strip('"').split()
    assert arguments[:2] == ["--interval", "5"]
    assert arguments[2].endswith("/pegasus-kickstart")
    assert settings["request_gpus"] == "1"


def test_planned_remove_specs_carry_recursive_as_strings(pegasus, nightly):
    """What the planner writes, which pegasus-globus-online must accept (see test_online)."""
    plan = pegasus.plan(nightly.workflow, nightly.properties, nightly.tmp / "submit",
                        nightly.env, output_site="results")
    cleanup = [json.loads(p.read_text()) for p in plan.submit_dir.rglob("cleanup_*.in")]
    assert {entry["target"]["recursive"] for spec in cleanup for entry in spec} <= {"True",
                                                                                     "False"}
    assert yaml.safe_load((nightly.tmp / "wf" / "sites.yml").read_text())["sites"]


def test_the_demo_plans_and_runs_both_workflows_with_the_real_pegasus(pegasus, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--output",
                             str(tmp_path / "out")], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path,
                            env={**os.environ, "PEGASUS_HOME": str(pegasus.home)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for workflow in ("nightly_backup", "gpu_training"):
        assert f"- pegasus-plan {workflow}" in out and f"- pegasus-run {workflow}:" in out
    assert "JOB stage_in_local_local_0_0 Returned with 0" in out  # pegasus-run's own lines
    assert "JOB train_train Returned with 0" in out
    assert "it ran 3 nights" in out and "registering again: unchanged" in out
    assert (tmp_path / "out" / "gpu-report.png").exists()


def test_the_local_dagman_stand_in_reads_htcondor_syntax_and_refuses_what_it_does_not_do(
        tmp_path):
    """local_dagman runs condor plans here in DAGMan's place: HTCondor's quoting, parents
    before children, $RETURN and RETRY as DAGMan has them; another universe is refused."""
    from local_dagman import condor_words, read_dag, run_dag

    assert condor_words("a 'b c' 'it''s' '' d") == ["a", "b c", "it's", "", "d"]
    with pytest.raises(ValueError, match="unbalanced"):
        condor_words("a 'b")
    jobs = tmp_path / "00"
    jobs.mkdir()
    log = tmp_path / "ran.log"
    for name, status in (("first", 0), ("second", 3)):
        (jobs / f"{name}.sub").write_text(
            f"universe = local\nexecutable = /bin/sh\nenvironment = \"NAME='{name} \"\"job\"\"'\"\n"
            f"arguments = \"-c 'echo $NAME >> {log}; cat; exit {status}'\"\n"
            f"input = 00/{name}.in\noutput = 00/{name}.out\nerror = 00/{name}.err\nqueue\n")
        (jobs / f"{name}.in").write_text(f"stdin of {name}\n")
    (tmp_path / "post.sh").write_text('echo "post $1" >> ran.log; exit "$1"\n')
    dag = tmp_path / "w.dag"
    dag.write_text("JOB second 00/second.sub\nJOB first 00/first.sub\nRETRY second 1\n"
                   "SCRIPT POST second /bin/sh post.sh $RETURN\nPARENT first CHILD second\n")
    assert [node.name for node in read_dag(dag)] == ["first", "second"]
    assert run_dag(dag, os.environ, log=lambda line: None) == 1  # second fails both tries
    assert log.read_text() == ('first "job"\nsecond "job"\npost 3\nsecond "job"\npost 3\n')
    assert (jobs / "first.out").read_text() == "stdin of first\n"
    (jobs / "first.sub").write_text("universe = vanilla\nexecutable = /bin/true\nqueue\n")
    with pytest.raises(ValueError, match="universe vanilla needs HTCondor"):
        run_dag(dag, os.environ, log=lambda line: None)
    dag.write_text("JOB a 00/first.sub\nSUBDAG EXTERNAL b b.dag\n")
    with pytest.raises(ValueError, match="SUBDAG is not supported"):
        read_dag(dag)
