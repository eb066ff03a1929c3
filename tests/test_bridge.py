"""go:// <-> file:// through the collections' HTTPS servers: pegasus-globus-transfer in
pegasus-transfer's place, against the emulator's HTTPS access."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

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

    def entry(self, source: str, target: str, lfn: str = "f") -> dict:
        return {"type": "transfer", "linkage": "input", "lfn": lfn, "id": 1,
                "src_urls": [{"site_label": "a", "url": source, "priority": 100}],
                "dest_urls": [{"site_label": "b", "url": target}]}

    def run(self, *entries: dict) -> subprocess.CompletedProcess:
        return subprocess.run(BRIDGE, input=json.dumps(list(entries)), capture_output=True,
                              text=True, env=self.env, timeout=120)


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


def test_a_sharedfs_workflow_with_plain_file_scratch_and_go_data(pegasus, emulator, tmp_path,
                                                                 monkeypatch):
    """The real planner and pegasus-run: the site's scratch is a plain directory, the input is
    a go:// replica and the outputs go to a go:// output site. Stock Pegasus fails this with
    "Unable to find handlers for 'go' to 'file' transfers"; pegasus::transfer pointing at
    pegasus-globus-transfer runs it."""
    import yaml
    from Pegasus.api import SiteCatalog

    from pegasus_globus.sites import globus_storage_site
    from tests.test_real_pegasus import example, job_states, local_site

    data, results, archive = (str(uuid.uuid4()) for _ in range(3))
    raw = "".join(f"{i},{i * i}\n" for i in range(100))
    (emulator.collection_path(data) / "data").mkdir()
    (emulator.collection_path(data) / "data" / "raw.csv").write_text(raw)
    home = tmp_path / "home"
    client, tokens = login(" ".join(login_scopes([data, results], timers=True)))
    TokenStore(home / ".pegasus" / "globus.conf").save_tokens(
        StoredToken.from_response(tokens), client_id=client.client_id)
    env = pegasus.environment({**os.environ, **emulator.environment, "HOME": str(home)})
    env.pop("PEGASUS_GLOBUS_CONFIG", None)
    for name, value in emulator.environment.items():
        monkeypatch.setenv(name, value)

    work = tmp_path / "wf"
    workflow = example("nightly_backup").build(data, results, archive, work, nights=1,
                                               site="local")
    document = yaml.safe_load(workflow.read_text())
    document["transformationCatalog"]["transformations"].append({
        "namespace": "pegasus", "name": "transfer", "sites": [{
            "name": "local", "pfn": str(Path(sys.executable).parent / "pegasus-globus-transfer"),
            "type": "installed"}]})
    workflow.write_text(yaml.safe_dump(document, sort_keys=False))  # jobs before dependencies
    SiteCatalog().add_sites(local_site(work / "scratch", work / "storage"),
                            globus_storage_site("results", results, "/nightly")).write(
        str(work / "sites.yml"))
    properties = pegasus.write_properties(work / "pegasus.properties", work / "sites.yml",
                                          **{"pegasus.transfer.arguments": "--max-attempts 1"})
    plan = pegasus.plan(workflow, properties, tmp_path / "submit", env, output_site="results")
    assert plan.returncode == 0 and plan.submit_dir, plan.output[-3000:]
    run = pegasus.run(plan.submit_dir, env)
    assert run.returncode == 0, run.output[-4000:]
    states = job_states(plan.submit_dir)
    assert all(s[-1] == "POST_SCRIPT_SUCCESS" for s in states.values()), states
    records = {path.name: path.read_text() for path in plan.submit_dir.rglob("stage_*.out*")}
    assert any("download go://" in text for text in records.values()), records.keys()
    assert any("upload go://" in text for text in records.values())  # the bridge did both
    kept = emulator.collection_path(results) / "nightly" / "summary.txt"
    rows = [line.split(",") for line in raw.splitlines()]
    assert kept.read_text() == (f"rows: {len(rows)}\n"
                                f"sum of y: {sum(float(y) for _, y in rows):g}\n")
