"""The emulator as real Globus clients see it: globus-cli and the seed's legacy Timer CLI
(globus-timer-cli, on globus-sdk 2), each in its own environment as users install it, and
globus-sdk 4's GlobusApp login, each driven as a user would.

globus-cli comes from ``make`` (``.venv-globus-cli``, pinned below) or ``$GLOBUS_CLI``, the legacy
CLI from ``make`` (``.venv-timer-cli``) or ``$GLOBUS_TIMER_CLI``; without one, its tests are
skipped with that reason, except under CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from pegasus_globus.emulator import approve

from .conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
GLOBUS_CLI_VERSION = "3.43.0"  # Makefile installs this one
TIMER_CLI_VERSION = "0.2.9"  # and this one


def _installed(variable: str, default: Path, package: str) -> Path:
    found = Path(os.environ.get(variable) or default)
    if not found.is_file():
        reason = (f"no {package.partition('==')[0]} at {found}: run make (it installs {package} "
                  f"into {default.parent.parent.name}), or set {variable}")
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def globus_cli() -> Path:
    return _installed("GLOBUS_CLI", ROOT / ".venv-globus-cli" / "bin" / "globus",
                      f"globus-cli=={GLOBUS_CLI_VERSION}")


@pytest.fixture(scope="session")
def timer_cli() -> Path:
    return _installed("GLOBUS_TIMER_CLI", ROOT / ".venv-timer-cli" / "bin" / "globus-timer",
                      f"globus-timer-cli=={TIMER_CLI_VERSION}")


AUTHORIZE_URL = re.compile(r"(https?://\S+/v2/oauth2/authorize\S+)")


def _login(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a command that prints an authorize URL and reads the code, approving as a user
    each time it asks (the legacy Timer CLI logs in once per scope it lacks)."""
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    watchdog = threading.Timer(120, process.kill)  # a prompt without a URL would wait forever
    watchdog.start()
    printed = ""
    try:
        for line in process.stdout:
            printed += line
            url = AUTHORIZE_URL.search(line)
            if url:
                process.stdin.write(approve(url.group(1)) + "\n")
                process.stdin.flush()
        process.wait()
    finally:
        watchdog.cancel()
    return subprocess.CompletedProcess(command, process.returncode, printed, "")


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


def test_collection_show_on_a_mapped_and_a_guest_collection_after_a_gcs_login(cli, emulator):
    """`globus collection show` reads the collection from its endpoint's GCS Manager API
    (it crashed on a null gcs_manager_url): without the endpoint's manage_collections
    consent the CLI says which login gives it, and after that login it shows each
    collection's type and name, as Transfer's endpoint document has them."""
    mapped, guest = str(uuid.uuid4()), str(uuid.uuid4())
    emulator.mark_collection(guest, guest=True)
    cli.env.update(emulator.tls_environment)  # the Manager API is called over TLS

    def endpoint_document(collection: str) -> dict[str, Any]:
        shown = cli.run("api", "transfer", "GET", f"/endpoint/{collection}")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    endpoint = endpoint_document(mapped)["owner_id"]
    assert cli.json("endpoint", "show", endpoint)["entity_type"] == "GCSv5_endpoint"
    unconsented = cli.run("collection", "show", mapped)
    assert unconsented.returncode != 0
    assert f"globus login --gcs {endpoint}" in unconsented.stderr + unconsented.stdout
    login = _login([str(cli.executable), "login", "--no-local-server", "--gcs", endpoint],
                   cli.env)
    assert login.returncode == 0, login.stdout
    for collection, kind in ((mapped, "mapped"), (guest, "guest")):
        name = endpoint_document(collection)["display_name"]
        shown = cli.run("collection", "show", collection)
        assert shown.returncode == 0, shown.stderr
        fields = dict(re.findall(r"^([^:\n]+):\s+(.*)$", shown.stdout, re.MULTILINE))
        assert (fields["Collection Type"], fields["Display Name"], fields["ID"]) == (
            kind, name, collection)
        assert fields["Owner"] == "user@example.org"
        document = cli.json("collection", "show", collection)
        assert (document["collection_type"], document["display_name"]) == (kind, name)
    assert cli.json("collection", "show", guest)["mapped_collection_id"] == endpoint_document(
        guest)["host_endpoint_id"]


class LegacyTimerCli:
    """globus-timer-cli 0.2.9 pointed at the emulator as its globus-sdk 2 allows: an
    environment of its own in ``~/.globus.cfg`` (GLOBUS_SDK_ENVIRONMENT), and the Timer service
    in ``TIMER_SERVICE_URL``. It has no browser flow: it prints the authorize URL and reads the
    code from its input, which is how these runs log in."""

    def __init__(self, executable: Path, emulator: Any, home: Path) -> None:
        self.executable = executable
        home.mkdir(parents=True, exist_ok=True)
        (home / ".globus.cfg").write_text(
            f"[environment emulator]\nauth_service = {emulator.url}\n"
            f"transfer_service = {emulator.url}\n")
        self.tokens = home / ".globus_timer_tokens.json"
        self.env = {**os.environ, "HOME": str(home), "GLOBUS_SDK_ENVIRONMENT": "emulator",
                    "TIMER_SERVICE_URL": emulator.url.rstrip("/")}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """Run it, logging in (approving) as often as it asks; ``logins`` says how often."""
        result = _login([str(self.executable), *args], self.env)
        result.logins = len(AUTHORIZE_URL.findall(result.stdout))  # type: ignore[attr-defined]
        return result


@pytest.fixture
def legacy(timer_cli, emulator, tmp_path) -> LegacyTimerCli:
    return LegacyTimerCli(timer_cli, emulator, tmp_path / "home")


def test_legacy_timer_cli_session_login_whoami_logout(legacy):
    login = legacy.run("session", "login")
    assert login.returncode == 0 and login.logins == 1, login.stdout
    assert "Logged in as user@example.org" in login.stdout
    assert legacy.tokens.stat().st_mode & 0o777 == 0o600
    whoami = legacy.run("session", "whoami")
    assert (whoami.returncode, whoami.logins, whoami.stdout.strip()) == (0, 0, "user@example.org")
    full = json.loads(legacy.run("session", "whoami", "--format", "json").stdout)
    assert full["preferred_username"] == "user@example.org"
    assert "Successfully logged out." in legacy.run("session", "logout").stdout
    assert not legacy.tokens.exists()
    after = legacy.run("session", "whoami")
    assert after.returncode == 1 and "Not logged in yet" in after.stdout


def _job_id(output: str) -> str:
    found = re.search(r"^Job ID:\s+(\S+)$", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def test_legacy_timer_cli_job_transfer_list_status_delete(legacy, emulator, collections,
                                                          tmp_path):
    """Its scope nests the collections' data_access (it reads the endpoint documents' gcs_version,
    high_assurance and host_endpoint) under the Transfer action provider's, under the timer's:
    collections that require that consent are transferred by its timers."""
    source, destination = collections
    for collection in collections:
        emulator.mark_collection(collection, consent_required=True)
    endpoints = ("--source-endpoint", source, "--dest-endpoint", destination)
    by_item = legacy.run("job", "transfer", "--name", "by item", "--interval", "1h", *endpoints,
                         "--item", "/data/a.txt", "/~/legacy/a.txt", "false")
    assert by_item.returncode == 0 and by_item.logins == 2, by_item.stdout  # transfer, timer
    assert "data_access" in AUTHORIZE_URL.findall(by_item.stdout)[-1]
    first = _job_id(by_item.stdout)

    items = tmp_path / "items.csv"
    items.write_text("# source, destination, recursive\n"
                     " /data/c.txt , /~/legacy/c.txt , false\n/data/datasub, /~/legacy/sub, true\n")
    by_file = legacy.run("job", "transfer", "--name", "by file", "--interval", "1h", *endpoints,
                         "--items-file", str(items))
    assert by_file.returncode == 0 and by_file.logins == 0, by_file.stdout
    second = _job_id(by_file.stdout)

    landed = emulator.resolve(destination, "/~/legacy")
    wait_for(lambda: {"a.txt", "c.txt", "sub/d.txt"} <= {
        str(p.relative_to(landed)) for p in landed.rglob("*") if p.is_file()}, timeout=30)
    wait_for(lambda: "RUN COMPLETE" in legacy.run("job", "status", first).stdout, timeout=30)
    listed = legacy.run("job", "list").stdout
    assert first in listed and second in listed and "by file" in listed

    deleted = legacy.run("job", "delete", second)
    assert deleted.returncode == 0 and re.search(r"^Status:\s+deleted$", deleted.stdout,
                                                  re.MULTILINE), deleted.stdout
    assert second not in legacy.run("job", "list").stdout
    assert second in legacy.run("job", "list", "--show-deleted").stdout


def test_a_globus_cli_login_survives_an_emulator_on_another_root(globus_cli, tmp_path):
    """globus-cli keeps the client it templated at its first login in ~/.globus/cli: an
    emulator on a new --root (nothing of the old state) still knows it, so `globus login`
    works again instead of answering 401 invalid_client for good."""
    from pegasus_globus.emulator import Emulator

    home = tmp_path / "home"
    with Emulator(tmp_path / "first") as first:
        cli = Cli(globus_cli, first, home)
        assert cli.run("whoami").stdout.strip() == "user@example.org"
    with Emulator(tmp_path / "second") as second:
        cli.env.update(second.environment)
        stale = cli.run("whoami")  # its tokens were the old root's
        assert stale.returncode != 0 and "globus login" in stale.stderr + stale.stdout
        again = _login([str(globus_cli), "login", "--no-local-server"], cli.env)
        assert again.returncode == 0, again.stdout
        assert cli.run("whoami").stdout.strip() == "user@example.org"
        logout = cli.run("logout", "--yes")
        assert logout.returncode == 0, logout.stdout + logout.stderr
        assert "successfully logged out" in logout.stdout


def test_legacy_timer_cli_asks_no_data_access_for_a_guest_collection(legacy, emulator,
                                                                      collections):
    """A guest collection has no data_access scope (Auth refuses one): its endpoint document
    names the mapped collection it is made on (host_endpoint), so the CLI asks none for it."""
    source, destination = collections
    emulator.mark_collection(source, guest=True)
    created = legacy.run("job", "transfer", "--name", "from a guest", "--interval", "1h",
                         "--source-endpoint", source, "--dest-endpoint", destination,
                         "--item", "/data/a.txt", "/~/from-guest.txt", "false")
    assert created.returncode == 0 and created.logins == 2, created.stdout
    timer_login = AUTHORIZE_URL.findall(created.stdout)[-1]
    assert f"{destination}%2Fdata_access" in timer_login
    assert f"{source}%2Fdata_access" not in timer_login
    wait_for(lambda: emulator.resolve(destination, "/~/from-guest.txt").exists(), timeout=30)


def test_legacy_timer_cli_stops_at_whichever_stop_condition_comes_first(legacy, emulator,
                                                                       collections):
    """`--stop-after-runs` and `--stop-after-date` together: the job stops as soon as one is
    met, as that CLI documents; here the date, an emulated hour after a run every 10 minutes."""
    import datetime as dt

    source, destination = collections
    stop = dt.datetime.fromtimestamp(emulator.clock.now() + 3600, dt.timezone.utc)
    created = legacy.run("job", "transfer", "--name", "both", "--interval", "10m",
                         "--source-endpoint", source, "--dest-endpoint", destination,
                         "--item", "/data/a.txt", "/~/both.txt", "false",
                         "--stop-after-runs", "100",
                         "--stop-after-date", stop.strftime("%Y-%m-%dT%H:%M:%S+0000"))
    assert created.returncode == 0, created.stdout
    job = _job_id(created.stdout)
    wait_for(lambda: emulator.state["timers"][job]["next_run"] is None, timeout=60)
    assert 1 <= emulator.state["timers"][job]["number_of_runs"] <= 7  # never the 100 runs
    assert re.search(r"^Next Run At:\s+None$", legacy.run("job", "status", job).stdout,
                     re.MULTILINE)
