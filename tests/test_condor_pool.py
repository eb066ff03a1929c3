"""GPU job shapes on a real personal HTCondor pool: ``pegasus-plan --submit``, DAGMan, the
schedd and startd, ``condor_starter`` in the vanilla universe with HTCondor's simulated GPUs,
monitord, and Pegasus' own ``pegasus-status``, ``pegasus-statistics`` and ``pegasus-analyzer``.

One workflow holds every shape (a planning and a DAG for all): a GPU job, a job that asked
for no GPU, a job that fails once and succeeds on DAGMan's retry, and four GPU tasks clustered
horizontally into one ``pegasus-cluster`` job, all under the sidecar as Pegasus' launcher.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import POOL_WALL_TIMES

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
MARKER = "---------------pegasus-multipart"


def gpu_shapes(work: Path, pegasus_home: Path) -> Path:
    """The workflow with every GPU shape, for site condorpool; returns workflow.yml."""
    from Pegasus.api import (
        EventType,
        Job,
        SiteCatalog,
        Transformation,
        TransformationCatalog,
        Workflow,
    )
    from personal_pool import simulated_gpu_trace
    from rehearsal import condor_site, example, local_site

    trace = simulated_gpu_trace(TRACE, work)
    flaky = work / "flaky.sh"  # fails its first try, succeeds on the next
    flaky.write_text('#!/bin/sh\n[ -e "$1" ] && exit 0\n: > "$1"\nexit 3\n')
    notify = work / "notify.sh"  # a job notification, as monitord runs it at each job's end
    notify.write_text('#!/bin/sh\necho "$PEGASUS_JOBID $PEGASUS_STATUS" >> '
                      f'{work / "notifications"}\n')
    for script in (flaky, notify):
        script.chmod(0o755)
    launcher = {"grid_start_launcher": example("gpu_training").LAUNCHER,
                "grid_start_launcher_arguments": f"--interval 1 --backend replay:{trace}"}

    def transformation(name: str, pfn: str, gpus: int) -> Transformation:
        made = Transformation(name, site="condorpool", pfn=pfn, is_stageable=False)
        made.add_pegasus_profile(**launcher)
        if gpus:
            made.add_pegasus_profile(gpus=gpus)
        return made

    train = transformation("train", "/bin/sleep", 2)  # both of the pool's GPUs
    cpu = transformation("cpu", "/bin/sleep", 0)
    retried = transformation("flaky", str(flaky), 1).add_dagman_profile(retry=2)
    plain = Transformation("plain", site="condorpool", pfn=str(flaky), is_stageable=False)
    plain.add_dagman_profile(retry=2)  # the same job without the sidecar
    task = transformation("task", "/bin/sleep", 1).add_pegasus_profile(clusters_size=4)
    workflow = Workflow("gpu-shapes").add_jobs(
        Job(train, _id="train").add_args("2"), Job(cpu, _id="cpu").add_args("1"),
        Job(retried, _id="flaky").add_args(str(work / "tried")).add_shell_hook(
            EventType.END, str(notify)),
        Job(plain, _id="plain").add_args(str(work / "tried-plain")).add_shell_hook(
            EventType.END, str(notify)),
        *(Job(task, _id=f"task{i}").add_args("1") for i in range(4)))
    workflow.add_transformation_catalog(TransformationCatalog().add_transformations(
        train, cpu, retried, plain, task))
    SiteCatalog().add_sites(local_site(work / "local-scratch", work / "outputs"),
                            condor_site("condorpool", work / "scratch", work / "outputs",
                                        pegasus_home)).write(str(work / "sites.yml"))
    path = work / "workflow.yml"
    workflow.write(str(path))
    return path


class Run:
    """A submitted workflow and what Pegasus, HTCondor and the records say about it."""

    def __init__(self, pegasus, work: Path, submit_dir: Path, env: dict[str, str]) -> None:
        self.pegasus, self.work, self.submit_dir, self.env = pegasus, work, submit_dir, env
        self.outcome = pegasus.wait(submit_dir)
        POOL_WALL_TIMES["gpu shapes"] = self.outcome.seconds

    def records(self, job: str) -> list[Path]:
        return sorted(self.submit_dir.rglob(f"{job}.out.[0-9][0-9][0-9]"))

    def condor_ids(self, job: str) -> list[str]:
        """The HTCondor cluster of each try of the job, as jobstate.log has them."""
        lines = [line.split() for line in (self.submit_dir / "jobstate.log").read_text()
                 .splitlines()]
        return [fields[3].split(".")[0] for fields in lines if fields[1] == job
                and fields[2] == "SUBMIT"]

    def assigned_gpus(self, cluster: str, pool) -> list[str]:
        """The GPUs HTCondor assigned that try (its slot's, which a reused claim may make more
        than the job asked for)."""
        return pool.run(["condor_history", cluster, "-af", "AssignedGPUs"]).stdout.strip(
            ).split(",")

    def tool(self, name: str, *arguments: str) -> str:
        outcome = self.pegasus.tool(name, *arguments, str(self.submit_dir), env=self.env)
        assert outcome.returncode == 0, outcome.output[-3000:]
        return outcome.output


@pytest.fixture(scope="module")
def shapes(pool_pegasus, condor_pool) -> Run:
    work = condor_pool.directory("gpu-shapes")
    workflow = gpu_shapes(work, pool_pegasus.home)
    properties = pool_pegasus.write_properties(work / "pegasus.properties", work / "sites.yml")
    condor_pool.give(work)
    env = pool_pegasus.environment({"HOME": str(work), "PATH": "/usr/bin:/bin"})
    plan = pool_pegasus.plan(workflow, properties, work / "submit", env, site="condorpool",
                             output_site="local", cleanup="none", cluster="horizontal")
    assert plan.returncode == 0 and plan.submit_dir, plan.output[-3000:]
    return Run(pool_pegasus, work, plan.submit_dir, env)


def entries(record: Path) -> list[dict]:
    from Pegasus.tools.kickstart_parser import YAMLParser

    return YAMLParser(str(record)).parse_stampede()


def gpu_blocks(record: Path) -> list[dict]:
    return [e["kickstart.inv.gpu.environment"] for e in entries(record)
            if "kickstart.inv.gpu.environment" in e]


def test_the_workflow_succeeds_and_pegasus_tools_agree(shapes):
    assert shapes.outcome.returncode == 0, shapes.outcome.output[-3000:]
    status = shapes.tool("pegasus-status", "--long")
    assert "Success" in status
    statistics = shapes.tool("pegasus-statistics", "-s", "all")
    assert "Workflow wall time" in statistics
    analyzer = shapes.tool("pegasus-analyzer")
    assert "# jobs failed      :      0" in analyzer and "Workflow Status    : success" in analyzer


def test_the_plan_puts_the_launcher_in_front_of_kickstart_and_asks_for_the_gpu(shapes):
    submit = next(shapes.submit_dir.rglob("train_train.sub")).read_text()
    settings = dict(line.split(" = ", 1) for line in submit.splitlines() if " = " in line)
    assert settings["executable"].endswith("/pegasus-kickstart-gpu")
    arguments = settings["arguments"].strip('"').split()
    assert arguments[:2] == ["--interval", "1"] and arguments[4].endswith("/pegasus-kickstart")
    assert settings["request_gpus"] == "2" and settings["universe"] == "vanilla"


def report(shapes) -> dict:
    return json.loads(subprocess.run(
        [sys.executable, "-m", "kickstart_gpu.cli", "report", str(shapes.submit_dir),
         "--format", "json"], capture_output=True, text=True, check=True).stdout)


def test_the_report_counts_jobs_tries_and_tasks_as_pegasus_statistics_does(shapes):
    summary = {line.split()[0]: line.split()[1:] for line in shapes.tool(
        "pegasus-statistics").splitlines() if line.startswith(("Tasks ", "Jobs "))}
    totals = report(shapes)["totals"]
    # Succeeded Failed Incomplete Total Retries Total+Retries
    assert summary["Jobs"][3:] == [str(totals[k]) for k in ("jobs", "retries", "tries")]
    assert summary["Tasks"][3:] == [str(totals[k]) for k in ("tasks", "task_retries",
                                                             "task_tries")]
    assert (totals["jobs"], totals["tasks"]) == (6, 8), totals  # with create-dir; 4 clustered


def test_the_report_has_a_row_for_every_clustered_task_with_the_gpus_assigned(shapes,
                                                                             condor_pool):
    rows = [row for row in report(shapes)["jobs"] if row["job"].startswith("merge_")]
    (cluster,) = shapes.condor_ids(rows[0]["job"])
    assigned = shapes.assigned_gpus(cluster, condor_pool)
    tasks = {row["task"]: row for row in rows}
    assert sorted(tasks) == ["(outside tasks)", "task0", "task1", "task2", "task3"]
    for row in tasks.values():  # HTCondor's short names: GPU-a0223334
        assert {gpu.split()[-1][:len(assigned[0])] for gpu in row["gpus"].split("; ")} == \
            set(assigned), row
    (record,) = shapes.records(rows[0]["job"])
    outer = json.loads(record.read_text().rsplit("- kickstart.inv.gpu.stats.max: ", 1)[1]
                       .splitlines()[0])["duration"]
    assert sum(row["wall_s"] for row in rows) == pytest.approx(outer)  # once, not twice


def uuids(environment: dict, assigned: list[str]) -> list[str]:
    """The record's GPUs, cut to the length of HTCondor's short names (GPU-a0223334)."""
    return [device["uuid"][:len(gpu)] for device, gpu in zip(environment["devices"], assigned)]


def test_every_try_records_the_gpus_htcondor_assigned_it(shapes, condor_pool):
    """Each try may get other GPUs of the pool: whichever they were, the record has them."""
    records, clusters = shapes.records("flaky_flaky"), shapes.condor_ids("flaky_flaky")
    assert len(records) == len(clusters) == 2
    for record, cluster in zip(records, clusters):
        (environment,) = gpu_blocks(record)
        assigned = shapes.assigned_gpus(cluster, condor_pool)
        assert uuids(environment, assigned) == assigned
        assert environment["device_count"] == len(assigned), environment.get("problems")


def test_the_gpu_job_records_exactly_the_gpu_htcondor_assigned(shapes, condor_pool):
    (record,) = shapes.records("train_train")
    (environment,) = gpu_blocks(record)
    (cluster,) = shapes.condor_ids("train_train")
    assigned = shapes.assigned_gpus(cluster, condor_pool)
    assert len(assigned) == 2 and all(gpu.startswith("GPU-") for gpu in assigned)
    assert uuids(environment, assigned) == assigned
    assert environment["device_count"] == 2 and not environment.get("problems")


def test_a_job_that_asked_for_no_gpu_records_none_without_a_problem(shapes):
    (record,) = shapes.records("cpu_cpu")
    (environment,) = gpu_blocks(record)
    assert environment["device_count"] == 0 and environment["devices"] == []
    assert not environment.get("problems"), environment.get("problems")


def test_a_job_that_fails_once_succeeds_on_dagmans_retry_with_a_record_per_try(shapes):
    first, second = shapes.records("flaky_flaky")
    assert [gpu_blocks(r) != [] for r in (first, second)] == [True, True]
    exits = [next(e for e in entries(r) if e.get("invocation"))["exitcode"]
             for r in (first, second)]
    assert exits == [3, 0]
    assert shapes.pegasus.exitcode(first.read_text()).returncode == 1
    assert shapes.pegasus.exitcode(second.read_text()).returncode == 0


def test_job_notifications_keep_success_and_failure_but_not_the_exit_code(shapes):
    """monitord takes the application's exit code for a job notification only from a record
    of exactly one entry (num_records == 1, Pegasus 5.1); the GPU block adds three, so a failed
    try's notification carries the job's status after pegasus-exitcode (1) instead of the
    application's exit code (3). Success and failure are told the same way."""
    seen: dict[str, list[str]] = {}
    for line in (shapes.work / "notifications").read_text().splitlines():
        job, status = line.split()
        seen.setdefault(job, []).append(status)
    assert seen["plain_plain"] == ["3", "0"]  # kickstart alone: the application's exit code
    assert seen["flaky_flaky"] == ["1", "0"]  # with the block: the job's status


def test_monitord_loaded_every_job_try_and_invocation(shapes):
    database = next(shapes.submit_dir.glob("*.stampede.db"))
    with sqlite3.connect(database) as db:
        tries = dict(db.execute("SELECT j.exec_job_id, COUNT(*) FROM job j JOIN job_instance i "
                                "ON i.job_id = j.job_id GROUP BY j.exec_job_id"))
        invocations = db.execute("SELECT COUNT(*) FROM invocation WHERE task_submit_seq >= 0"
                                 ).fetchone()[0]
    assert tries["flaky_flaky"] == 2 and tries["train_train"] == 1, tries
    assert invocations >= 2 + 2 + 2 + 4  # train, cpu, two tries of flaky and of plain, 4 tasks
    exits: dict[str, list[int]] = {}  # the record with the block loads as the one without
    with sqlite3.connect(database) as db:
        for job, code in db.execute(
                "SELECT j.exec_job_id, v.exitcode FROM invocation v JOIN job_instance i "
                "ON v.job_instance_id = i.job_instance_id JOIN job j ON i.job_id = j.job_id "
                "WHERE v.task_submit_seq >= 0 ORDER BY i.job_submit_seq"):
            exits.setdefault(job, []).append(code)
    assert exits["flaky_flaky"] == exits["plain_plain"] == [3 << 8, 0]  # raw wait statuses


def test_clustered_gpu_tasks_each_run_under_the_sidecar(shapes):
    (record,) = [r for r in shapes.submit_dir.rglob("merge_*.out.000")]
    parsed = entries(record)
    tasks = [e for e in parsed if e.get("invocation")]
    assert len(tasks) >= 4, [e.get("transformation") for e in tasks]
    assert len(gpu_blocks(record)) >= 4
    assert record.read_text().count(MARKER) >= 4  # every task's block is in the record
