"""``pegasus-globus-online-init`` against the emulator, and what stock Pegasus reads back."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pegasus_globus.emulator import approve
from pegasus_globus.token_store import TokenStore

from .conftest import admin

COLLECTION = "6f2a4d2e-0a8e-4c4c-9a51-1c2b9f0e7a11"
INIT = [sys.executable, "-m", "pegasus_globus.online_init"]


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def env(emulator, home) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PEGASUS_GLOBUS")}
    return {**base, **emulator.environment, "HOME": str(home)}


def run_init(env: dict[str, str], *args: str, code: str | None = "approve",
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would: read the URL it prints, pipe the code into it."""
    process = subprocess.Popen([*INIT, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    printed = ""
    if code == "approve":
        for line in process.stdout:
            printed += line
            if "://" in line:
                code = approve(line.strip())
                break
    stdout, stderr = process.communicate((code or "") + "\n", timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, printed + stdout, stderr)


def conf(home: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(home / ".pegasus" / "globus.conf")
    return parser


def secrets_in(home: Path) -> list[str]:
    parser = conf(home)
    return [value for section in parser.sections() for key, value in parser.items(section)
            if key in ("transfer_at", "transfer_rt", "access_token", "refresh_token")]


def test_login_without_permanent_writes_a_stock_readable_file(env, home):
    result = run_init(env, "--no-browser")
    assert result.returncode == 0, result.stderr
    assert "Logged in as user@example.org" in result.stdout
    oauth = conf(home)["oauth"]
    assert oauth["client_id"] == "d7382f5a-4ea3-4b69-b094-99c392fc820d"
    assert oauth["transfer_at"] and int(oauth["transfer_at_exp"]) > time.time()
    assert "transfer_rt" not in oauth  # never the string "None"
    assert (home / ".pegasus").stat().st_mode & 0o777 == 0o700
    assert (home / ".pegasus" / "globus.conf").stat().st_mode & 0o777 == 0o600
    for secret in secrets_in(home):
        assert secret not in result.stdout + result.stderr


def test_permanent_login_with_timers_and_collections(env, home):
    result = run_init(env, "--permanent", "--timers", "--collections", COLLECTION,
                      "--no-browser")
    assert result.returncode == 0, result.stderr
    parser = conf(home)
    assert parser["oauth"]["transfer_rt"]
    timers = parser["token 524230d7-ea86-4a52-8312-86065a9e0417"]
    assert timers["refresh_token"] and timers["access_token"]
    assert parser.has_section(f"token {COLLECTION}")
    assert parser["pegasus-globus"]["collections"] == COLLECTION


def test_stock_pegasus_reads_our_tokens(env, home, monkeypatch):
    assert run_init(env, "--permanent", "--no-browser").returncode == 0
    transfer = pytest.importorskip("Pegasus.transfer")
    monkeypatch.setenv("HOME", str(home))
    creds = transfer.GlobusOnlineHandler()._creds(None)
    oauth = conf(home)["oauth"]
    assert creds == {"client_id": oauth["client_id"], "transfer_at": oauth["transfer_at"],
                     "transfer_rt": oauth["transfer_rt"],
                     "transfer_at_exp": int(oauth["transfer_at_exp"])}


def test_existing_content_is_kept_and_stock_none_is_dropped(env, home):
    (home / ".pegasus").mkdir(parents=True)
    config = home / ".pegasus" / "globus.conf"
    config.write_text("# my notes\n[oauth]\nclient_id = old\ntransfer_rt = None\n\n"
                      "[mine]\nkeep = me\n")
    config.chmod(0o644)  # as stock Pegasus leaves it
    assert run_init(env, "--no-browser").returncode == 0
    text = config.read_text()
    assert text.startswith("# my notes\n")
    assert conf(home)["mine"]["keep"] == "me"
    assert "transfer_rt" not in conf(home)["oauth"]
    assert config.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("code", ["wrong-code", ""])
def test_a_bad_code_leaves_the_configuration_untouched(env, home, code):
    assert run_init(env, "--no-browser").returncode == 0
    before = (home / ".pegasus" / "globus.conf").read_bytes()
    result = run_init(env, "--no-browser", code=code)
    assert result.returncode == 1
    assert "run pegasus-globus-online-init again" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 or "code you get" in result.stderr
    assert (home / ".pegasus" / "globus.conf").read_bytes() == before


@pytest.mark.parametrize("value", ["not-a-uuid", "../../x"])
def test_collections_must_be_uuids(env, home, value):
    result = run_init(env, "--no-browser", "--collections", value, code=None)
    assert result.returncode == 2 and f"'{value}' is not a collection or endpoint UUID" in (
        result.stderr)
    assert not home.exists()  # refused before any login or file


def test_a_code_that_is_not_text_is_refused_plainly(env, home):
    process = subprocess.Popen([*INIT, "--no-browser"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, stderr = process.communicate(b"\xff\xfe\x00code\n", timeout=60)
    assert process.returncode == 1 and b"that is not an authorization code" in stderr
    assert b"Traceback" not in stderr and not (home / ".pegasus" / "globus.conf").exists()


def test_ctrl_c_at_the_code_prompt_saves_nothing(env, home):
    import signal

    # as at a terminal, where Ctrl-C is not ignored: a run started in the background by a
    # non-interactive shell (CI may be one) inherits SIGINT ignored, and so would the command
    process = subprocess.Popen([*INIT, "--no-browser"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    prompt = b""
    while not prompt.endswith(b"here: "):  # at the code prompt
        prompt += process.stderr.read(1)
    time.sleep(0.2)  # in readline
    process.send_signal(signal.SIGINT)
    # wait with standard input still open: communicate() would close it, and an end of input
    # racing the signal is another outcome ("no authorization code was given"), not Ctrl-C's
    process.wait(timeout=60)
    stderr = process.stderr.read()
    process.stdin.close()
    assert process.returncode == 1 and b"login cancelled; nothing was saved" in stderr
    assert b"Traceback" not in stderr and not (home / ".pegasus" / "globus.conf").exists()


def test_logout_without_a_token_file_creates_nothing(env, home):
    result = run_init(env, "--logout", code=None)
    assert result.returncode == 0 and not home.exists()


def test_damaged_config_is_reported_before_login(env, home):
    (home / ".pegasus").mkdir(parents=True)
    config = home / ".pegasus" / "globus.conf"
    config.write_text("this is not [an ini file\n")
    result = run_init(env, "--no-browser", code=None)
    assert result.returncode == 2
    assert str(config) in result.stderr and "not a valid configuration file" in result.stderr
    assert "://" not in result.stdout  # no login was started
    assert config.read_text() == "this is not [an ini file\n"


def test_unreadable_config_is_a_clear_error(env, home):
    (home / ".pegasus" / "globus.conf").mkdir(parents=True)  # unreadable as a file, even as root
    result = run_init(env, "--status")
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "globus.conf" in result.stderr


def test_unreachable_globus_auth(env):
    env = {**env, "GLOBUS_SDK_SERVICE_URL_AUTH": "http://127.0.0.1:9/"}
    result = run_init(env, "--no-browser", code="some-code")
    assert result.returncode == 1
    assert "cannot reach Globus Auth at http://127.0.0.1:9/" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_home(env):
    env = {k: v for k, v in env.items() if k != "HOME"}
    result = run_init(env, "--status")
    assert result.returncode == 2
    assert "HOME is not set" in result.stderr and "--config" in result.stderr


def test_config_option_and_environment_choose_the_file(env, tmp_path):
    target = tmp_path / "elsewhere" / "g.conf"
    assert run_init({**env, "PEGASUS_GLOBUS_CONFIG": str(target)}, "--no-browser").returncode == 0
    assert target.exists()
    assert json.loads(run_init(env, "--status", "--format", "json", "--config", str(target))
                      .stdout)["identity"] == "user@example.org"


def test_status_reports_and_suggests_next_steps(env, home):
    result = run_init(env, "--status")
    assert result.returncode == 1
    assert "pegasus-globus-online-init --permanent" in result.stdout
    assert run_init(env, "--no-browser").returncode == 0
    report = json.loads(run_init(env, "--status", "--format", "json").stdout)
    assert report["identity"] == "user@example.org"
    assert report["tokens"]["transfer"]["refreshable"] is False
    assert report["tokens"]["transfer"]["usable"] is True
    assert "timers" not in report["tokens"]
    assert any("--timers" in step for step in report["next_steps"])
    text = run_init(env, "--status").stdout
    assert "Transfer:" in text and "not refreshable" in text


def test_status_of_an_expired_unrefreshable_token(env, home):
    assert run_init(env, "--no-browser").returncode == 0
    store = TokenStore(home / ".pegasus" / "globus.conf")
    store.update({"oauth": {"transfer_at_exp": str(int(time.time()) - 10)}})
    result = run_init(env, "--status")
    assert result.returncode == 1
    assert "expired" in result.stdout and "pegasus-globus-online-init --permanent" in result.stdout


def test_logout_with_revoke(env, home, emulator):
    assert run_init(env, "--permanent", "--no-browser").returncode == 0
    refresh_token = conf(home)["oauth"]["transfer_rt"]
    result = run_init(env, "--logout", "--revoke")
    assert result.returncode == 0 and "revoked and removed" in result.stdout
    assert secrets_in(home) == []
    assert conf(home)["oauth"]["client_id"]  # everything but the tokens stays
    assert emulator.state["refresh_tokens"][refresh_token]["revoked"]


def test_revoke_needs_logout(env):
    assert run_init(env, "--revoke", code=None).returncode == 2


def test_help_matches_the_seed(env):
    result = subprocess.run([*INIT, "--help"], capture_output=True, text=True, env=env)
    assert result.returncode == 0
    for flag in ("--permanent", "--collections", "--endpoints", "--domains", "--timers",
                 "--client-id", "--config", "--no-browser", "--status", "--logout"):
        assert flag in result.stdout


def test_login_requests_domains_and_endpoint_consent(env, home, emulator):
    endpoint = str(uuid.uuid4())
    result = run_init(env, "-e", endpoint, "-d", "example.org", "--no-browser")
    assert result.returncode == 0
    assert "session_required_single_domain=example.org" in result.stdout
    assert conf(home).has_section(f"token {endpoint}")
    assert admin(emulator, "GET", "_emulator/stats")["requests"]["POST /v2/oauth2/token"] == 1
