"""go:// <-> file:// through the collections' HTTPS servers: pegasus-globus-transfer in
pegasus-transfer's place, against the emulator's HTTPS access."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from pegasus_globus.scopes import login_scopes
from pegasus_globus.token_store import StoredToken, TokenStore

from .conftest import login

BRIDGE = [sys.executable, "-m", "pegasus_globus.bridge_cli"]


class Site:
    """A logged-in HOME, a collection with files and a plain local directory."""

    def __init__(self, emulator, tmp_path: Path, consent: bool = True) -> None:
        self.emulator = emulator
        self.collection = str(uuid.uuid4())
        root = emulator.collection_path(self.collection)
        (root / "data").mkdir()
        (root / "data" / "raw.csv").write_bytes(b"a,b\n1,2\n" * 1000)
        self.scratch = tmp_path / "scratch"
        self.scratch.mkdir()
        self.home = tmp_path / "home"
        client, tokens = login(" ".join(login_scopes([self.collection] if consent else [])))
        TokenStore(self.home / ".pegasus" / "globus.conf").save_tokens(
            StoredToken.from_response(tokens), client_id=client.client_id)
        self.env = {**os.environ, **emulator.environment, "HOME": str(self.home)}
        self.env.pop("PEGASUS_GLOBUS_CONFIG", None)

    def entry(self, source: str, target: str, lfn: str = "f", **checks: bool) -> dict:
        return {"type": "transfer", "linkage": "input", "lfn": lfn, "id": 1, **checks,
                "src_urls": [{"site_label": "a", "url": source, "priority": 100}],
                "dest_urls": [{"site_label": "b", "url": target}]}

    def run(self, *entries: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(BRIDGE, input=json.dumps(list(entries)), capture_output=True,
                              text=True, env=self.env, timeout=120, cwd=cwd)

    def job_directory(self, pegasus, recorded: dict[str, bytes]) -> Path:
        """A stage-out job's directory: the *.meta file PegasusLite wrote for its outputs
        (``recorded``: LFN -> the bytes whose sha256 it recorded), Pegasus' tools found."""
        self.env["PEGASUS_HOME"] = str(pegasus.home)
        job = self.scratch / "job"
        job.mkdir(exist_ok=True)
        (job / "analyse.meta").write_text(json.dumps([
            {"_id": lfn, "_type": "file", "_attributes": {
                "checksum.type": "sha256", "checksum.value": hashlib.sha256(data).hexdigest()}}
            for lfn, data in recorded.items()]))
        return job


@pytest.fixture
def site(emulator, tmp_path) -> Site:
    return Site(emulator, tmp_path)


def test_go_to_file_and_file_to_go(site):
    go = f"go://{site.collection}"
    (site.scratch / "out.dat").write_bytes(b"result\n" * 500)
    result = site.run(site.entry(f"{go}/data/raw.csv", f"file://{site.scratch}/in/raw.csv"),
                      site.entry(f"file://{site.scratch}/out.dat", f"{go}/results/run1/out.dat"))
    assert result.returncode == 0, result.stderr
    root = site.emulator.collection_path(site.collection)
    original = (root / "data" / "raw.csv").read_bytes()
    assert (site.scratch / "in" / "raw.csv").read_bytes() == original
    assert (root / "results" / "run1" / "out.dat").read_bytes() == b"result\n" * 500
    assert not list(site.scratch.rglob("*.part"))  # nothing half-written left
    umask = os.umask(0)
    os.umask(umask)
    assert (site.scratch / "in" / "raw.csv").stat().st_mode & 0o777 == 0o666 & ~umask
    assert "download" in result.stderr and "upload" in result.stderr


@pytest.mark.parametrize("recorded, exit_code", [(b"result\n" * 500, 0), (b"other\n", 1)],
                         ids=["matching", "corrupted"])
def test_an_upload_is_pulled_back_and_checked_against_pegasuslites_checksum(
        site, pegasus, recorded, exit_code):
    """verify_checksum_remote, which the planner sets on outputs: the file as it arrived in
    the collection against the sha256 PegasusLite recorded (pegasus-integrity --verify)."""
    job = site.job_directory(pegasus, {"out.dat": recorded})
    (site.scratch / "out.dat").write_bytes(b"result\n" * 500)
    target = f"go://{site.collection}/results/out.dat"
    result = site.run(site.entry(f"file://{site.scratch}/out.dat", target, lfn="out.dat",
                                 verify_checksum_remote=True), cwd=job)
    assert result.returncode == exit_code, result.stderr
    if exit_code:
        assert f"{target}: the integrity check of out.dat failed" in result.stderr
        assert "does not match the calculated checksum" in result.stderr
    else:
        assert f"{target}: sha256 matches the one recorded for out.dat" in result.stderr


def test_a_go_to_go_output_is_checked_after_the_stock_transfer_moved_it(site, pegasus):
    """Stock pegasus-transfer skips verify_checksum_remote for go:// destinations ("Unable to
    pull file from go to local file"); the bridge checks the go->go output it moved."""
    raw = (site.emulator.collection_path(site.collection) / "data" / "raw.csv").read_bytes()
    job = site.job_directory(pegasus, {"raw.csv": raw, "bad.csv": b"not what arrived"})
    go = f"go://{site.collection}"
    result = site.run(
        site.entry(f"{go}/data/raw.csv", f"{go}/results/raw.csv", lfn="raw.csv",
                   verify_checksum_remote=True),
        {**site.entry(f"{go}/data/raw.csv", f"{go}/results/bad.csv", lfn="bad.csv",
                      verify_checksum_remote=True), "id": 2}, cwd=job)
    assert result.returncode == 1
    assert f"{go}/results/raw.csv: sha256 matches the one recorded for raw.csv" in result.stderr
    assert f"{go}/results/bad.csv: the integrity check of bad.csv failed" in result.stderr
    assert "Skipping integrity check" not in result.stderr + result.stdout


def test_a_go_to_go_output_the_bridge_cannot_pull_back_is_moved_unchecked(site, pegasus):
    """A destination without HTTPS (GCSv4, Globus Connect Personal): the stock tool moves the
    file and skips the check; the bridge says why it cannot check and fails nothing."""
    job = site.job_directory(pegasus, {"raw.csv": b"not what arrived"})
    site.emulator.mark_collection(site.collection, no_https=True)
    go = f"go://{site.collection}"
    result = site.run(site.entry(f"{go}/data/raw.csv", f"{go}/results/raw.csv", lfn="raw.csv",
                                 verify_checksum_remote=True), cwd=job)
    assert result.returncode == 0, result.stderr
    assert "serves no HTTPS" in result.stderr and "is not checked against its sha256" in (
        result.stderr)
    assert (site.emulator.collection_path(site.collection) / "results" / "raw.csv").exists()


def test_a_download_asked_to_generate_a_checksum_records_it_for_kickstart(site, pegasus):
    """generate_checksum: the sha256 goes to $KICKSTART_INTEGRITY_DATA, for the record."""
    job = site.job_directory(pegasus, {})
    site.env["KICKSTART_INTEGRITY_DATA"] = str(job / "integrity.yml")
    result = site.run(site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv", lfn="raw.csv",
                                 generate_checksum=True), cwd=job)
    assert result.returncode == 0, result.stderr
    recorded = yaml.safe_load((job / "integrity.yml").read_text())
    raw = (site.scratch / "raw.csv").read_bytes()
    assert recorded["raw.csv"]["sha256"] == hashlib.sha256(raw).hexdigest()


def test_the_bridges_transfers_are_in_the_record_as_pegasus_transfers_are(site, tmp_path):
    """transfer_attempts in $PEGASUS_MULTIPART_DIR, in the stock tool's form: Pegasus' own
    parser reads them from a record, beside kickstart's invocation."""
    from Pegasus.tools.kickstart_parser import YAMLParser

    multipart = tmp_path / "multipart"
    multipart.mkdir()
    site.env["PEGASUS_MULTIPART_DIR"] = str(multipart)
    (site.scratch / "out.dat").write_bytes(b"x" * 10)
    go = f"go://{site.collection}"
    result = site.run(site.entry(f"{go}/data/raw.csv", "file://$PWD/raw.csv", lfn="raw.csv"),
                      site.entry(f"file://{site.scratch}/out.dat", f"{go}/out/o.dat", lfn="o"),
                      site.entry(f"{go}/data/missing.csv", f"file://{site.scratch}/m", lfn="m"),
                      cwd=site.scratch)
    assert result.returncode == 1  # the missing one
    (block,) = multipart.iterdir()
    record = tmp_path / "job.out"
    stage_in = Path(__file__).parent / "fixtures" / "kickstart" / "success_stage_in.out"
    record.write_text(stage_in.read_text() + "\n---------------pegasus-multipart\n"
                      + block.read_text())  # as PegasusLite appends it
    entries = YAMLParser(str(record)).parse_stampede()
    attempts = {a["lfn"]: a for e in entries for a in e.get("transfer_attempts", [])}
    assert attempts["raw.csv"]["src_url"] == f"{go}/data/raw.csv"
    assert attempts["raw.csv"]["dst_url"] == f"file://{site.scratch}/raw.csv"
    assert attempts["raw.csv"]["success"] is True and attempts["raw.csv"]["bytes"] == 8000
    assert attempts["o"]["dst_url"] == f"{go}/out/o.dat" and attempts["o"]["bytes"] == 10
    assert attempts["m"]["success"] is False and "bytes" not in attempts["m"]
    assert {a["src_label"] for a in attempts.values()} == {"a"}


def test_pegasus_lites_pwd_urls_are_the_jobs_directory(site):
    """PegasusLite writes the job's directory as file://$PWD/... (seen in its scripts)."""
    result = subprocess.run(BRIDGE, input=json.dumps([site.entry(
        f"go://{site.collection}/data/raw.csv", "file://$PWD/raw.csv")]), capture_output=True,
        text=True, env=site.env, timeout=120, cwd=site.scratch)
    assert result.returncode == 0, result.stderr
    assert (site.scratch / "raw.csv").stat().st_size == 8000


def test_a_missing_source_fails_naming_it_and_leaves_nothing(site):
    result = site.run(site.entry(f"go://{site.collection}/data/none.csv",
                                 f"file://{site.scratch}/none.csv"))
    assert result.returncode == 1
    assert f"go://{site.collection}/data/none.csv: no such file" in result.stderr
    assert not list(site.scratch.iterdir())


def test_a_collection_without_https_names_the_alternative(site):
    site.emulator.mark_collection(site.collection, no_https=True)
    result = site.run(site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv"))
    assert result.returncode == 1
    assert "serves no HTTPS" in result.stderr and "--scratch-collection" in result.stderr


def test_without_the_https_consent_the_login_to_run_is_named(emulator, tmp_path):
    site = Site(emulator, tmp_path, consent=False)
    result = site.run(site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv"))
    assert result.returncode == 1
    assert f"run pegasus-globus-online-init --permanent --collections {site.collection}" in (
        result.stderr)


def test_without_any_login_the_command_to_run_names_the_collections(site):
    (site.home / ".pegasus" / "globus.conf").unlink()
    result = site.run(site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv"))
    assert result.returncode == 1 and "not logged in to Globus Transfer" in result.stderr
    assert f"--collections {site.collection}" in result.stderr


def test_the_emulators_https_server_checks_the_collections_https_scope(site, transfer_client):
    server = transfer_client.get_endpoint(site.collection)["https_server"]
    assert server.endswith(f"/https/{site.collection}")
    import requests

    wrong = transfer_client.authorizer.get_authorization_header()  # a Transfer token
    assert requests.get(f"{server}/data/raw.csv", headers={"Authorization": wrong},
                        timeout=10).status_code == 401
    _, tokens = login(f"https://auth.globus.org/scopes/{site.collection}/data_access")
    other = tokens.by_resource_server[site.collection]["access_token"]
    assert requests.get(f"{server}/data/raw.csv", headers={"Authorization": f"Bearer {other}"},
                        timeout=10).status_code == 403  # data_access is not https


def test_other_entries_go_to_the_stock_pegasus_transfer(site, pegasus):
    (site.scratch / "a.txt").write_text("a")
    site.env["PEGASUS_HOME"] = str(pegasus.home)
    result = site.run(site.entry(f"file://{site.scratch}/a.txt", f"file://{site.scratch}/b.txt"),
                      site.entry(f"go://{site.collection}/data/raw.csv",
                                 f"file://{site.scratch}/raw.csv"))
    assert result.returncode == 0, result.stderr
    assert (site.scratch / "b.txt").read_text() == "a"  # by the stock pegasus-transfer
    assert (site.scratch / "raw.csv").exists()  # by the bridge


class GoDataWorkflow:
    """nightly_backup for site local with plain file:// scratch, its input a go:// replica, its
    outputs for the go:// output site "results", and a go:// collection declared as site
    "staging"; pegasus::transfer points at pegasus-globus-transfer (stock Pegasus fails every
    variant with "Unable to find handlers for 'go' to 'file' transfers")."""

    def __init__(self, pegasus, emulator, tmp_path: Path, monkeypatch) -> None:
        from local_dagman import condor_submit_dag_stand_in
        from Pegasus.api import SiteCatalog

        from pegasus_globus.sites import globus_scratch_site, globus_storage_site
        from tests.test_real_pegasus import example, local_site

        self.pegasus, self.emulator, self.tmp = pegasus, emulator, tmp_path
        self.data, self.results, archive, staging = (str(uuid.uuid4()) for _ in range(4))
        data = self.data
        self.raw = "".join(f"{i},{i * i}\n" for i in range(100))
        (emulator.collection_path(data) / "data").mkdir()
        (emulator.collection_path(data) / "data" / "raw.csv").write_text(self.raw)
        home = tmp_path / "home"
        client, tokens = login(" ".join(login_scopes([data, self.results, staging],
                                                     timers=True)))
        TokenStore(home / ".pegasus" / "globus.conf").save_tokens(
            StoredToken.from_response(tokens), client_id=client.client_id)
        self.env = pegasus.environment({**os.environ, **emulator.environment, "HOME": str(home)})
        self.env.pop("PEGASUS_GLOBUS_CONFIG", None)
        self.env["PATH"] = f"{condor_submit_dag_stand_in(tmp_path / 'condor')}:{self.env['PATH']}"
        for name, value in emulator.environment.items():
            monkeypatch.setenv(name, value)

        self.work = tmp_path / "wf"
        self.workflow = example("nightly_backup").build(data, self.results, archive, self.work,
                                                        nights=1, site="local")
        document = yaml.safe_load(self.workflow.read_text())
        for replica in document["replicaCatalog"]["replicas"]:  # what PegasusLite verifies
            replica["checksum"] = {"sha256": hashlib.sha256(self.raw.encode()).hexdigest()}
        document["transformationCatalog"]["transformations"].append({
            "namespace": "pegasus", "name": "transfer", "sites": [{
                "name": "local", "type": "installed",
                "pfn": str(Path(sys.executable).parent / "pegasus-globus-transfer")}]})
        self.workflow.write_text(yaml.safe_dump(document, sort_keys=False))  # jobs, then deps
        SiteCatalog().add_sites(
            local_site(self.work / "scratch", self.work / "storage"),
            globus_scratch_site("staging", staging, "/staging", collection_path="/staging"),
            globus_storage_site("results", self.results, "/nightly")).write(
            str(self.work / "sites.yml"))

    def plan(self, staging_site: str | None = None, **properties: str):
        properties = self.pegasus.write_properties(
            self.work / "pegasus.properties", self.work / "sites.yml",
            **{"pegasus.transfer.arguments": "--max-attempts 1", **properties})
        plan = self.pegasus.plan(self.workflow, properties, self.tmp / "submit", self.env,
                                 output_site="results", staging_site=staging_site)
        assert plan.returncode == 0 and plan.submit_dir, plan.output[-3000:]
        return plan.submit_dir

    def records(self, submit_dir: Path, pattern: str) -> str:
        return "".join(path.read_text() for path in submit_dir.rglob(pattern))

    def assert_results_arrived(self) -> None:
        kept = self.emulator.collection_path(self.results) / "nightly" / "summary.txt"
        rows = [line.split(",") for line in self.raw.splitlines()]
        assert kept.read_text() == (f"rows: {len(rows)}\n"
                                    f"sum of y: {sum(float(y) for _, y in rows):g}\n")


@pytest.fixture
def go_data(pegasus, emulator, tmp_path, monkeypatch) -> GoDataWorkflow:
    return GoDataWorkflow(pegasus, emulator, tmp_path, monkeypatch)


def test_a_sharedfs_workflow_with_plain_file_scratch_and_go_data(go_data):
    """The real planner and pegasus-run (Shell code generator): stage-in go→file and
    stage-out file→go on the submit host, both by the bridge."""
    from tests.test_real_pegasus import job_states

    submit_dir = go_data.plan()
    run = go_data.pegasus.run(submit_dir, go_data.env)
    assert run.returncode == 0, run.output[-4000:]
    states = job_states(submit_dir)
    assert all(s[-1] == "POST_SCRIPT_SUCCESS" for s in states.values()), states
    assert "download go://" in go_data.records(submit_dir, "stage_in_*.out*")
    assert "upload go://" in go_data.records(submit_dir, "stage_out_*.out*")
    go_data.assert_results_arrived()


def test_a_condorio_pegasuslite_workflow_with_go_data(go_data):
    """condorio: the submit host stages the go:// input in (go→file) and the outputs out
    (file→go, checked against PegasusLite's sha256); HTCondor's file transfer between it and
    the job is done by Pegasus' pegasus-lite-local.sh, as for site local on a real pool."""
    submit_dir = go_data.plan(None, **{"pegasus.code.generator": "condor",
                                       "pegasus.data.configuration": "condorio"})
    run = go_data.pegasus.run_dag(submit_dir, go_data.env)
    assert run.returncode == 0, run.output[-4000:]
    assert "download go://" in go_data.records(submit_dir, "stage_in_*.out*")
    stage_out = go_data.records(submit_dir, "stage_out_*.out*")
    assert "upload go://" in stage_out
    for output in ("report.html", "summary.txt"):
        assert f"/nightly/{output}: sha256 matches the one recorded for {output}" in stage_out
    go_data.assert_results_arrived()


def test_pegasuslite_verifies_the_bridges_download_against_the_replica_checksum(go_data):
    """The bridge has no checksum from the collection's HTTPS server; the replica catalog's
    sha256 is checked by PegasusLite once the file is in the job's directory."""
    submit_dir = go_data.plan("staging", **{
        "pegasus.code.generator": "condor", "pegasus.data.configuration": "nonsharedfs",
        "pegasus.transfer.bypass.input.staging": "true"})
    (go_data.emulator.collection_path(go_data.data) / "data" / "raw.csv").write_text(
        go_data.raw.replace("9", "8"))  # changed after it was catalogued
    run = go_data.pegasus.run_dag(submit_dir, go_data.env)
    assert run.returncode == 1 and "POST analyse_analyse: exit 1" in run.output.splitlines()
    job = go_data.records(submit_dir, "analyse_analyse.err*")
    assert "download go://" in job
    assert "Integrity check: raw.csv: Expected checksum" in job and "does not match" in job
    assert not (go_data.emulator.collection_path(go_data.results) / "nightly").exists()


@pytest.mark.parametrize("staging_site", [None, "staging"], ids=["file-staging", "go-staging"])
def test_a_nonsharedfs_pegasuslite_workflow_with_go_data(go_data, staging_site):
    """The real planner's condor plan, its PegasusLite job scripts run by Pegasus' own
    pegasus-lite-local.sh in a scratch directory of their own (local_dagman in DAGMan's place).
    The job pulls its go:// input straight to its directory (bypassed input staging). With the
    site's own file:// scratch as staging site, the job's outputs go there and the stage-out job
    uploads them file→go; with a go:// collection as staging site, the job itself uploads them
    (file→go inside PegasusLite) and stage-out is go→go."""
    from Pegasus.tools.kickstart_parser import YAMLParser

    submit_dir = go_data.plan(staging_site, **{
        "pegasus.code.generator": "condor", "pegasus.data.configuration": "nonsharedfs",
        "pegasus.transfer.bypass.input.staging": "true"})
    run = go_data.pegasus.run_dag(submit_dir, go_data.env)
    assert run.returncode == 0, run.output[-4000:]
    assert "POST analyse_analyse: exit 0" in run.output.splitlines()
    job = go_data.records(submit_dir, "analyse_analyse.err*")  # PegasusLite's own log
    assert "download go://" in job  # go→file on the worker
    assert ("upload go://" in job) == (staging_site == "staging")
    record = next(submit_dir.rglob("analyse_analyse.out.000"))
    attempts = [a for e in YAMLParser(str(record)).parse_stampede()
                for a in e.get("transfer_attempts", [])]  # as monitord reads the record
    assert {(a["lfn"], a["src_url"].split(":")[0], a["success"]) for a in attempts} >= {
        ("raw.csv", "go", True)}
    stage_out = go_data.records(submit_dir, "stage_out_*.out*")
    if staging_site is None:
        assert "upload go://" in stage_out
    for output in ("report.html", "summary.txt"):  # checked against PegasusLite's sha256
        assert f"/nightly/{output}: sha256 matches the one recorded for {output}" in stage_out
    go_data.assert_results_arrived()
