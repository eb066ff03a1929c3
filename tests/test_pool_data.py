"""go:// data in every data configuration, on a real personal HTCondor pool: the real planner's
condor plans submitted with ``pegasus-plan --submit``, run by DAGMan, compute jobs in the
vanilla universe through ``condor_starter`` (PegasusLite where the configuration has it), data
jobs where the planner puts them, against the Globus emulator.

Every configuration is planned and submitted first and the runs overlap on the pool; each test
then waits for its own. The workflow is nightly_backup: a go:// input replica (with its sha256,
which PegasusLite checks), outputs to the go:// output site ``results``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from pegasus_globus.emulator import Emulator
from pegasus_globus.scopes import login_scopes
from pegasus_globus.token_store import StoredToken, TokenStore

from .conftest import POOL_WALL_TIMES, login, wait_for

BRIDGE = str(Path(sys.executable).parent / "pegasus-globus-transfer")
RAW = "".join(f"{i},{i * i}\n" for i in range(100))
ROWS = [line.split(",") for line in RAW.splitlines()]
SUMMARY = f"rows: {len(ROWS)}\nsum of y: {sum(float(y) for _, y in ROWS):g}\n"
# name: (pegasus.data.configuration, staging site, scratch of the compute site, the input:
# as catalogued, missing, or changed after its sha256 was catalogued)
CONFIGURATIONS = {
    "sharedfs-go-scratch": ("sharedfs", None, "go", "present"),
    "sharedfs-file-scratch": ("sharedfs", None, "file", "present"),
    "nonsharedfs-file-staging": ("nonsharedfs", "local", "file", "present"),
    "nonsharedfs-go-staging": ("nonsharedfs", "staging", "file", "present"),
    "condorio": ("condorio", None, "file", "present"),
    "missing-input": ("nonsharedfs", "local", "file", "missing"),
    "changed-input": ("nonsharedfs", "local", "file", "changed"),
}
SUCCEEDING = [name for name, (*_, state) in CONFIGURATIONS.items() if state == "present"]


class GoDataRun:
    """nightly_backup for site condorpool in one data configuration, planned and submitted."""

    def __init__(self, name: str, pegasus, pool, emulator: Emulator) -> None:
        from Pegasus.api import SiteCatalog
        from rehearsal import condor_site, example, local_site

        from pegasus_globus.sites import globus_scratch_site, globus_storage_site

        configuration, staging, scratch_kind, state = CONFIGURATIONS[name]
        self.name, self.pegasus, self.pool, self.emulator = name, pegasus, pool, emulator
        self.work = pool.directory(name)
        self.data, self.results, self.archive, staging_collection, scratch_collection = (
            str(uuid.uuid4()) for _ in range(5))
        if state != "missing":
            (emulator.collection_path(self.data) / "data").mkdir()
            (emulator.collection_path(self.data) / "data" / "raw.csv").write_text(
                RAW.replace("9", "8") if state == "changed" else RAW)
        home = self.work / "home"
        client, tokens = login(" ".join(login_scopes(
            [self.data, self.results, staging_collection, scratch_collection], timers=True)))
        TokenStore(home / ".pegasus" / "globus.conf").save_tokens(
            StoredToken.from_response(tokens), client_id=client.client_id)
        # a job gets none of the submitter's environment: what it needs is in the site catalog
        # (HOME: stock pegasus-transfer reads ~/.pegasus/globus.conf itself)
        job_env = {**emulator.environment, "PEGASUS_HOME": str(pegasus.home), "HOME": str(home)}
        self.env = pegasus.environment({"PATH": "/usr/bin:/bin", **job_env})

        # the timer's first run may come before stage-out: the one checked runs every
        # (emulated) night until the module ends, so a run after the outputs arrived is certain
        nights = 10000 if name == "sharedfs-go-scratch" else 1
        workflow = example("nightly_backup").build(self.data, self.results, self.archive,
                                                   self.work / "wf", nights=nights,
                                                   site="condorpool")
        document = yaml.safe_load(workflow.read_text())
        for replica in document["replicaCatalog"]["replicas"]:  # what PegasusLite verifies
            replica["checksum"] = {"sha256": hashlib.sha256(RAW.encode()).hexdigest()}
        document["transformationCatalog"]["transformations"].append({
            "namespace": "pegasus", "name": "transfer", "sites": [
                {"name": site, "type": "installed", "pfn": BRIDGE}
                for site in ("local", "condorpool")]})
        workflow.write_text(yaml.safe_dump(document, sort_keys=False))
        scratch = self.work / "scratch"
        if scratch_kind == "go":
            scratch.mkdir()
            emulator.map_collection(scratch_collection, scratch)
            compute = globus_scratch_site("condorpool", scratch_collection, str(scratch))
            compute.add_pegasus_profile(style="condor").add_condor_profile(universe="vanilla")
        else:
            compute = condor_site("condorpool", scratch, self.work / "storage", pegasus.home)
        local = local_site(self.work / "local-scratch", self.work / "local-storage")
        for site in (compute, local):
            site.add_env(**job_env)
        SiteCatalog().add_sites(
            local, compute,
            globus_scratch_site("staging", staging_collection, "/staging",
                                collection_path="/staging"),
            globus_storage_site("results", self.results, "/nightly")).write(
            str(self.work / "wf" / "sites.yml"))
        properties = pegasus.write_properties(
            self.work / "wf" / "pegasus.properties", self.work / "wf" / "sites.yml",
            **{"pegasus.data.configuration": configuration,  # the job pulls its input itself
               "pegasus.transfer.bypass.input.staging": str(configuration == "nonsharedfs"),
               "pegasus.transfer.arguments": "--max-attempts 1"})
        pool.give(self.work)
        plan = pegasus.plan(workflow, properties, self.work / "submit", self.env,
                            site="condorpool", output_site="results", staging_site=staging)
        assert plan.returncode == 0 and plan.submit_dir, plan.output[-3000:]
        self.submit_dir: Path = plan.submit_dir
        self._outcome = None

    def outcome(self):
        if self._outcome is None:
            self._outcome = self.pegasus.wait(self.submit_dir)
            POOL_WALL_TIMES[self.name] = self._outcome.seconds
        return self._outcome

    def records(self, pattern: str) -> str:
        return "".join(path.read_text() for path in sorted(self.submit_dir.rglob(pattern)))

    def tool(self, name: str, *arguments: str) -> str:
        return self.pegasus.tool(name, *arguments, str(self.submit_dir), env=self.env).output

    def registered(self) -> dict[str, str]:
        """The output replica catalog (JDBCRC on sqlite, the planner's default): LFN -> PFN."""
        with sqlite3.connect(next(self.submit_dir.glob("*.replicas.db"))) as db:
            return dict(db.execute("SELECT l.lfn, p.pfn FROM rc_lfn l JOIN rc_pfn p "
                                   "ON p.lfn_id = l.lfn_id"))


@pytest.fixture(scope="module")
def runs(pool_pegasus, condor_pool, tmp_path_factory):
    with Emulator(tmp_path_factory.mktemp("globus"), time_scale=86400) as emulator, \
            pytest.MonkeyPatch.context() as patch:
        for name, value in emulator.environment.items():  # for the logins
            patch.setenv(name, value)
        runs = {name: GoDataRun(name, pool_pegasus, condor_pool, emulator)
                for name in CONFIGURATIONS}
        yield runs
        for run in runs.values():  # none outlives the emulator it talks to
            run.outcome()


@pytest.mark.parametrize("name", SUCCEEDING)
def test_outputs_arrive_are_registered_and_pegasus_tools_agree(runs, name):
    run = runs[name]
    outcome = run.outcome()
    assert outcome.returncode == 0, outcome.output[-3000:]
    kept = run.emulator.collection_path(run.results) / "nightly"
    assert (kept / "summary.txt").read_text() == SUMMARY  # byte-identical to what the job made
    assert SUMMARY.splitlines()[0] in (kept / "report.html").read_text()
    registered = run.registered()
    for output in ("summary.txt", "report.html"):
        assert registered[output] == f"go://{run.results}/nightly/{output}"
    assert "Success" in run.tool("pegasus-status", "--long")
    analyzer = run.tool("pegasus-analyzer")
    assert "# jobs failed      :      0" in analyzer
    assert "Workflow wall time" in run.tool("pegasus-statistics", "-s", "all")


@pytest.mark.parametrize("name", ["nonsharedfs-file-staging", "nonsharedfs-go-staging"])
def test_pegasuslite_pulls_the_go_input_itself_and_checks_it(runs, name):
    run = runs[name]
    assert run.outcome().returncode == 0
    job = run.records("analyse_analyse.err*")  # PegasusLite's own log
    assert "download go://" in job  # go->file on the worker, bypassed input staging
    assert "Integrity check: raw.csv" not in job or "does not match" not in job
    assert ("upload go://" in job) == (name == "nonsharedfs-go-staging")
    stage_out = run.records("stage_out_*.out*")
    for output in ("report.html", "summary.txt"):  # checked against PegasusLite's sha256
        assert f"/nightly/{output}: sha256 matches the one recorded for {output}" in stage_out


def test_condorio_stages_through_the_submit_host(runs):
    run = runs["condorio"]
    assert run.outcome().returncode == 0
    assert "download go://" in run.records("stage_in_*.out*")
    assert "upload go://" in run.records("stage_out_*.out*")


def test_pegasuslite_refuses_an_input_changed_after_it_was_catalogued(runs):
    """The bridge's download has no checksum from the collection's HTTPS server; PegasusLite
    checks the replica catalog's sha256 once the file is in the job's directory."""
    run = runs["changed-input"]
    assert run.outcome().returncode != 0
    job = run.records("analyse_analyse.err*")
    assert "download go://" in job
    assert "Integrity check: raw.csv: Expected checksum" in job and "does not match" in job
    assert not (run.emulator.collection_path(run.results) / "nightly").exists()


def test_the_registration_job_made_the_timer_that_backs_the_results_up(runs):
    run = runs["sharedfs-go-scratch"]
    assert run.outcome().returncode == 0
    timers = [timer for timer in run.emulator.state["timers"].values()
              if run.results in str(timer)]
    assert len(timers) == 1, "one timer per workflow, registered by its own job"
    archived = run.emulator.collection_path(run.archive) / "backups" / "nightly" / "summary.txt"
    wait_for(lambda: archived.exists() and archived.read_text() == SUMMARY, timeout=60)


def test_a_missing_go_input_fails_the_job_and_the_analyzer_names_it(runs):
    run = runs["missing-input"]
    outcome = run.outcome()
    assert outcome.returncode != 0
    analyzer = run.tool("pegasus-analyzer")
    assert "analyse_analyse" in analyzer and "/data/raw.csv" in analyzer
    assert "Workflow Status    : failure" in analyzer
    assert not (run.emulator.collection_path(run.results) / "nightly").exists()
