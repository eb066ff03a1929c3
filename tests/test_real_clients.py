"""The emulator as real Globus clients see it: globus-cli (in its own environment, as users
install it) and globus-sdk 4's GlobusApp login, each driven as a user would.

globus-cli comes from ``make`` (``.venv-globus-cli``, pinned below) or ``$GLOBUS_CLI``; without
it these tests are skipped with that reason, except under CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pegasus_globus.emulator import approve

from .conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
GLOBUS_CLI_VERSION = "3.43.0"  # Makefile installs this one


@pytest.fixture(scope="session")
def globus_cli() -> Path:
    found = Path(os.environ.get("GLOBUS_CLI") or ROOT / ".venv-globus-cli" / "bin" / "globus")
    if not found.is_file():
        reason = (f"no globus-cli at {found}: run make (it installs globus-cli=="
                  f"{GLOBUS_CLI_VERSION} into .venv-globus-cli), or set GLOBUS_CLI")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _login(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a login that prints an authorize URL and reads the code, approving as a user."""
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    printed = ""
    for line in process.stdout:
        printed += line
        url = re.search(r"(https?://\S+/v2/oauth2/authorize\S+)", line)
        if url:
            process.stdin.write(approve(url.group(1)) + "\n")
            process.stdin.flush()
            break
    rest, _ = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, printed + rest, "")


class Cli:
    """globus-cli, logged in to the emulator with ``login --no-local-server``."""

    def __init__(self, executable: Path, emulator: Any, home: Path) -> None:
        self.executable = executable
        self.env = {**os.environ, **emulator.environment, "HOME": str(home)}
        login = _login([str(executable), "login", "--no-local-server"], self.env)
        assert login.returncode == 0, login.stdout
        assert "You have successfully logged in to the Globus CLI!" in login.stdout

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.executable), *args], capture_output=True, text=True,
                              env=self.env, timeout=120)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "-F", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def cli(globus_cli, emulator, tmp_path) -> Cli:
    return Cli(globus_cli, emulator, tmp_path / "home")


@pytest.fixture
def collections(emulator) -> tuple[str, str]:
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    data = emulator.collection_path(source) / "data"
    (data / "datasub").mkdir(parents=True)
    for name in ("a.txt", "b.tmp", "c.txt", "datasub/d.txt"):
        (data / name).write_text(name)
    emulator.collection_path(destination)
    return source, destination


def test_login_whoami_and_session(cli):
    assert cli.run("whoami").stdout.strip() == "user@example.org"
    assert cli.json("whoami")["preferred_username"] == "user@example.org"
    assert cli.run("session", "show").returncode == 0


def test_ls_recursive_mkdir_and_stat(cli, collections):
    source, _ = collections
    listing = cli.run("ls", "-r", f"{source}:/data/")
    assert listing.returncode == 0, listing.stderr
    assert set(listing.stdout.split()) == {"a.txt", "b.tmp", "c.txt", "datasub/",
                                           "datasub/d.txt"}
    assert cli.run("mkdir", f"{source}:/made").returncode == 0
    assert cli.json("stat", f"{source}:/data/a.txt")["size"] == len("a.txt")
    missing = cli.run("stat", f"{source}:/nothing")
    assert "Nothing found at /nothing" in missing.stdout + missing.stderr


def test_transfer_batch_exclude_sync_level_tasks_and_delete(cli, emulator, collections, tmp_path):
    source, destination = collections
    batch = tmp_path / "batch.txt"
    batch.write_text("/data/a.txt /~/batch/a.txt\n/data/c.txt /~/batch/c.txt\n")
    task = cli.json("transfer", source, destination, "--batch", str(batch),
                    "--label", "conformance batch")["task_id"]
    assert cli.run("task", "wait", task, "--timeout", "60").returncode == 0
    shown = cli.json("task", "show", task)
    assert (shown["status"], shown["files_transferred"]) == ("SUCCEEDED", 2)
    events = cli.json("task", "event-list", task)["DATA"]
    assert events and not any(event["is_error"] for event in events)

    tree = cli.json("transfer", f"{source}:/data/", f"{destination}:/~/tree/", "--recursive",
                    "--exclude", "*.tmp", "--sync-level", "checksum")["task_id"]
    assert cli.run("task", "wait", tree, "--timeout", "60").returncode == 0
    copied = emulator.resolve(destination, "/~/tree")
    assert sorted(str(p.relative_to(copied)) for p in copied.rglob("*") if p.is_file()) == [
        "a.txt", "c.txt", "datasub/d.txt"]  # b.tmp excluded
    labelled = cli.json("task", "list", "--filter-label", "conformance")["DATA"]
    assert [t["task_id"] for t in labelled] == [task]

    removal = cli.json("delete", f"{destination}:/~/batch/", "--recursive")["task_id"]
    assert cli.run("task", "wait", removal, "--timeout", "60").returncode == 0
    assert not emulator.resolve(destination, "/~/batch").exists()


def test_timer_create_list_show_pause_resume_delete(cli, emulator, collections):
    """Mapped GCSv5 collections (not high assurance) need a data_access consent under the
    timer: globus-cli reads that from the endpoint documents and checks the user's consents."""
    source, destination = collections
    create = ("timer", "create", "transfer", f"{source}:/data/a.txt",
              f"{destination}:/~/timed/a.txt", "--interval", "1h", "--stop-after-runs", "3")
    refused = cli.run(*create)
    assert refused.returncode == 4 and "--timer-data-access" in refused.stdout
    consent = _login([str(cli.executable), "session", "consent", "--no-local-server",
                      "--timer-data-access", source, "--timer-data-access", destination],
                     cli.env)
    assert consent.returncode == 0, consent.stdout
    created = cli.json(*create)
    timer = created.get("timer", created)["job_id"]
    assert [t["job_id"] for t in cli.json("timer", "list")] == [timer]  # -F json: a list
    wait_for(lambda: cli.json("timer", "show", timer)["number_of_runs"] >= 1, timeout=30)
    shown = cli.run("timer", "show", timer).stdout
    assert "This timer is no longer active" not in shown and "Activity:" in shown
    assert cli.run("timer", "pause", timer).returncode == 0
    assert "Paused, awaiting user action" in cli.run("timer", "show", timer).stdout
    assert cli.run("timer", "resume", timer).returncode == 0
    assert cli.json("timer", "show", timer)["status"] != "inactive"
    assert cli.run("timer", "delete", timer).returncode == 0
    assert cli.json("timer", "list") == []
    assert emulator.resolve(destination, "/~/timed/a.txt").read_text() == "a.txt"


USER_APP = """
import sys, globus_sdk
app = globus_sdk.UserApp("pegasus-conformance", client_id=sys.argv[2])
client = globus_sdk.TransferClient(app=app)
print("listed", client.operation_ls(sys.argv[1], path="/data/")["path"])
"""


def test_globus_sdk_user_app_logs_in_and_lists(emulator, collections, tmp_path):
    """globus-sdk 4's recommended login verifies the ID token's signature (OIDC)."""
    env = {**os.environ, **emulator.environment, "HOME": str(tmp_path)}
    result = _login([sys.executable, "-c", USER_APP, collections[0],
                     "d7382f5a-4ea3-4b69-b094-99c392fc820d"], env)
    assert result.returncode == 0, result.stdout
    assert "listed /data/" in result.stdout


def test_a_once_timer_without_a_start_runs_now(cli, emulator, collections):
    """`--stop-after-runs 1` without --interval and --start: a 'once' schedule without a
    datetime, which the SDK documents as "now"."""
    source, destination = collections
    consent = _login([str(cli.executable), "session", "consent", "--no-local-server",
                      "--timer-data-access", source, "--timer-data-access", destination],
                     cli.env)
    assert consent.returncode == 0, consent.stdout
    created = cli.run("timer", "create", "transfer", f"{source}:/data/a.txt",
                      f"{destination}:/~/once.txt", "--stop-after-runs", "1")
    assert created.returncode == 0, created.stdout + created.stderr
    wait_for(lambda: emulator.resolve(destination, "/~/once.txt").exists(), timeout=30)
