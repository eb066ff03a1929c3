"""pegasus-globus-setup on a Pegasus installation, the example workflows, and the demo."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from bench.concurrent_refresh import logged_in_store

ROOT = Path(__file__).resolve().parent.parent
SETUP = [sys.executable, "-m", "pegasus_globus.setup_cli"]


@pytest.fixture
def pegasus_home(tmp_path) -> Path:
    """A Pegasus installation: stock pegasus-transfer and pegasus-globus-online in bin/."""
    import Pegasus

    cli = Path(Pegasus.__file__).parent / "cli"
    home = tmp_path / "pegasus"
    (home / "bin").mkdir(parents=True)
    for name in ("pegasus-transfer", "pegasus-globus-online"):
        script = home / "bin" / name
        script.write_text(f"#!{sys.executable}\n" + (cli / f"{name}.py").read_text())
        script.chmod(0o755)
    return home


def setup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SETUP, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_install_is_idempotent_and_uninstall_restores_the_stock_file(pegasus_home):
    handler = pegasus_home / "bin" / "pegasus-globus-online"
    stock, mode = handler.read_bytes(), stat.S_IMODE(handler.stat().st_mode)
    first = setup("install", "--pegasus-home", str(pegasus_home))
    assert first.returncode == 0 and "stock handler kept" in first.stdout
    assert "pegasus_globus.online" in handler.read_text()
    assert (pegasus_home / "bin" / "pegasus-globus-online.stock").read_bytes() == stock
    again = setup("install", "--pegasus-home", str(pegasus_home))
    assert again.returncode == 0 and "already" in again.stdout
    assert setup("uninstall", "--pegasus-home", str(pegasus_home)).returncode == 0
    assert handler.read_bytes() == stock and stat.S_IMODE(handler.stat().st_mode) == mode
    assert not (pegasus_home / "bin" / "pegasus-globus-online.stock").exists()


def test_without_pegasus_install_says_what_it_would_do(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PEGASUS_HOME": ""}
    result = setup("install", env=env)
    assert result.returncode == 1
    assert "--pegasus-home DIR" in result.stdout and "would put" in result.stdout


def test_a_directory_without_pegasus_transfer_is_refused(tmp_path):
    (tmp_path / "bin").mkdir()
    result = setup("install", "--pegasus-home", str(tmp_path))
    assert result.returncode == 2 and "has no pegasus-transfer" in result.stderr


def test_installed_handler_is_what_stock_pegasus_transfer_runs(pegasus_home, emulator,
                                                               tmp_path):
    assert setup("install", "--pegasus-home", str(pegasus_home)).returncode == 0
    home = tmp_path / "home"
    logged_in_store(emulator, home / ".pegasus" / "globus.conf")
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    (emulator.collection_path(source) / "in.dat").write_text("data")
    listing = tmp_path / "transfers.json"
    listing.write_text(json.dumps([{
        "type": "transfer", "lfn": "in.dat", "id": 1, "linkage": "input",
        "src_urls": [{"site_label": "a", "url": f"go://{source}/in.dat"}],
        "dest_urls": [{"site_label": "b", "url": f"go://{destination}/~/in.dat"}]}]))
    env = {**os.environ, **emulator.environment, "HOME": str(home), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(pegasus_home / "bin" / "pegasus-transfer"), "--file",
                             str(listing), "--max-attempts", "1"], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "transfer complete" in result.stdout + result.stderr  # our handler's own words
    assert (emulator.collection_path(destination) / "in.dat").read_text() == "data"


def test_check_reports_each_problem_with_its_fix(pegasus_home, emulator, tmp_path):
    home = tmp_path / "home"
    env = {**emulator.environment, "HOME": str(home), "PEGASUS_HOME": str(pegasus_home)}
    rows = {r["check"]: r for r in json.loads(setup("check", "--format", "json",
                                                    env=env).stdout)}
    assert rows["transfer token"]["status"] == "fail"
    assert rows["transfer token"]["fix"] == "pegasus-globus-online-init --permanent"
    assert rows["Globus handler"]["fix"] == "pegasus-globus-setup install"
    logged_in_store(emulator, home / ".pegasus" / "globus.conf")
    assert setup("install", "--pegasus-home", str(pegasus_home)).returncode == 0
    result = setup("check", "--format", "json", env=env)
    rows = {r["check"]: r for r in json.loads(result.stdout)}
    for name in ("transfer token", "transfer service", "timers token", "timers service",
                 "Globus handler"):
        assert rows[name]["status"] == "ok", rows[name]
    assert rows["GPU monitoring"]["status"] in ("ok", "warn")
    assert result.returncode == 0


def test_snippets_enable_the_launcher_and_globus_staging():
    result = setup("snippets", "--site", "gpusite")
    assert result.returncode == 0
    launcher = re.search(r"gridstart.launcher: (\S+)", result.stdout).group(1)
    assert launcher.endswith("/pegasus-kickstart-gpu")  # by its path: HTCondor has no PATH
    assert "- name: gpusite" in result.stdout and "go://" in result.stdout
    document = yaml.safe_load(result.stdout.split("# The same with Pegasus.api")[0])
    assert "profiles" not in document  # not site-wide: the data jobs hold no GPU
    (transformation,) = document["transformations"]
    assert transformation["profiles"]["pegasus"]["gridstart.launcher"] == launcher


def test_the_go_scratch_recipe_is_a_site_catalog_pegasus_loads():
    from Pegasus import site_catalog

    scratch, archive = str(uuid.uuid4()), str(uuid.uuid4())
    result = setup("snippets", "--site", "cluster", "--scratch-collection", scratch,
                   "--scratch-dir", "/scratch/me", "--archive-collection", archive)
    lines = result.stdout.splitlines()
    start = lines.index('pegasus: "5.0"')
    block = "\n".join(lines[start:lines.index("", start)])
    catalog = site_catalog.loads(block)
    scratch_dir = catalog.sites["cluster"].directories[0]
    assert scratch_dir.path == "/scratch/me"
    assert [fs.url for fs in scratch_dir.file_servers] == [f"go://{scratch}"]
    assert [fs.url for fs in catalog.sites["archive"].directories[0].file_servers] == [
        f"go://{archive}/results"]


def test_the_bridge_entry_is_a_transformation_catalog_pegasus_loads():
    """pegasus::transfer for the compute site (its data jobs and PegasusLite's transfers) and
    for local (the submit host's, e.g. a go:// staging site's stage-out)."""
    from Pegasus import transformation_catalog

    lines = setup("snippets", "--site", "cluster").stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line == "transformations:"
                 and "name: transfer" in lines[i + 2])
    catalog = transformation_catalog.loads("\n".join(lines[start:lines.index("", start)]))
    (bridge,) = catalog.transformations.values()
    assert (bridge.namespace, bridge.name) == ("pegasus", "transfer")
    assert {site.name for site in bridge.sites.values()} == {"cluster", "local"}
    assert all(site.pfn.endswith("/pegasus-globus-transfer") for site in bridge.sites.values())


def test_snippets_refuse_a_collection_that_is_not_a_uuid():
    result = setup("snippets", "--scratch-collection", "my-scratch")
    assert result.returncode == 2 and "--scratch-collection 'my-scratch'" in result.stderr


def load_example(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / "workflows" / name / "workflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_training_example_wraps_the_job_with_the_launcher(tmp_path):
    import yaml

    document = yaml.safe_load(load_example("gpu_training").build(tmp_path).read_text())
    profiles = document["transformationCatalog"]["transformations"][0]["profiles"]["pegasus"]
    launcher = profiles["gridstart.launcher"]  # by its path: HTCondor searches no PATH
    assert launcher.endswith("/pegasus-kickstart-gpu") and os.access(launcher, os.X_OK)
    assert profiles["gpus"] == 1


def test_nightly_backup_example_plans_one_timer(capsys, tmp_path, monkeypatch):
    from pegasus_globus.timers.cli import main

    data, results, archive = (str(uuid.uuid4()) for _ in range(3))
    workflow = load_example("nightly_backup").build(data, results, archive, tmp_path)
    assert main(["register", str(workflow), "--dry-run", "--format", "json"]) == 0
    (timer,) = json.loads(capsys.readouterr().out)
    assert (timer["source"], timer["destination"], timer["interval"]) == (results, archive,
                                                                          86400)
    assert timer["items"] == [["/nightly/", "/backups/nightly/", True]]


def test_the_demo_runs_end_to_end_without_pegasus(tmp_path):
    """With no Pegasus to be found the demo drives the pieces by hand, into --output only."""
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not os.path.exists(os.path.join(p, "pegasus-plan")))
    env = {k: v for k, v in os.environ.items() if k != "PEGASUS_HOME"} | {"PATH": path}
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--output",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("- ")]
    assert "no Pegasus installation found" in lines[2]
    assert lines[4].startswith("- pegasus-globus-setup check --workflow out/nightly_backup/"
                               "workflow.yml: nightly-backup: ready for Globus (1 go:// input")
    assert len(lines) == 11 and lines[-1].startswith("- done in")
    assert "gpu-report.png" in lines[-1] and "--plot out/gpu-report.png" in lines[-2]
    assert (tmp_path / "out" / "gpu-report.png").exists()
