"""Shared fixtures: an in-process Globus emulator and logins through the real globus-sdk."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import globus_sdk
import pytest

from pegasus_globus.emulator import Emulator, approve

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples"))
from rehearsal import RealPegasus, find_pegasus

PEGASUS_CLIENT_ID = "d7382f5a-4ea3-4b69-b094-99c392fc820d"
TRANSFER = globus_sdk.TransferClient.scopes.all
TIMERS = globus_sdk.TimersClient.scopes.timer
TIMERS_RS = globus_sdk.TimersClient.resource_server


@pytest.fixture
def emulator(tmp_path, monkeypatch) -> Iterator[Emulator]:
    """An emulator whose timers' clock runs 600 times faster than real time."""
    with Emulator(tmp_path / "globus", time_scale=600, seed=7) as emu:
        for name, value in emu.environment.items():
            monkeypatch.setenv(name, value)
        yield emu


def login(scopes: str, refresh: bool = True) -> tuple[globus_sdk.NativeAppAuthClient, Any]:
    """A complete native-app login with PKCE, the code read off the emulator's page."""
    client = globus_sdk.NativeAppAuthClient(PEGASUS_CLIENT_ID)
    client.oauth2_start_flow(requested_scopes=scopes, refresh_tokens=refresh)
    code = approve(client.oauth2_get_authorize_url())
    return client, client.oauth2_exchange_code_for_tokens(code)


@pytest.fixture
def transfer_client(emulator) -> globus_sdk.TransferClient:
    client, tokens = login(TRANSFER)
    token = tokens.by_resource_server["transfer.api.globus.org"]
    return globus_sdk.TransferClient(authorizer=globus_sdk.RefreshTokenAuthorizer(
        token["refresh_token"], client, access_token=token["access_token"],
        expires_at=token["expires_at_seconds"]))


@pytest.fixture
def timers_client(emulator) -> globus_sdk.TimersClient:
    _, tokens = login(f"{TIMERS}[{TRANSFER}]")
    token = tokens.by_resource_server[TIMERS_RS]
    return globus_sdk.TimersClient(authorizer=globus_sdk.AccessTokenAuthorizer(
        token["access_token"]))


def admin(emulator: Emulator, method: str, path: str, body: Any = None) -> Any:
    """Call an /_emulator/ admin route."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(emulator.url + path.lstrip("/"), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    """Poll until ``condition()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def deny_as_mode_000(monkeypatch, directory: Path) -> None:
    """The emulator's storage refuses ``directory`` as POSIX mode 000 does: it stats, but is
    neither listed nor entered (PermissionError). Tests run as root, who passes POSIX
    permissions, so the refusal is made here, in the emulator's process."""
    def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Path, *args: Any, **kwargs: Any) -> Any:
            if (path == directory and method.__name__ != "stat") or directory in path.parents:
                raise PermissionError(13, "Permission denied")
            return method(path, *args, **kwargs)
        return call
    for name in ("iterdir", "stat", "mkdir"):
        monkeypatch.setattr(Path, name, guarded(getattr(Path, name)))


def wait_task(client: globus_sdk.TransferClient, task_id: str) -> dict[str, Any]:
    return wait_for(lambda: (doc := client.get_task(task_id).data)["status"]
                    in ("SUCCEEDED", "FAILED") and doc)


def _absent(reason: str) -> None:
    """Skip without a real component, except under CI (CI=true), where it is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs it: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pegasus(tmp_path_factory) -> RealPegasus:
    """The real Pegasus, found as a user's machine has it ($PEGASUS_HOME, else pegasus-plan on
    PATH), copied with this project's handler installed. Skipped without one, except under CI
    (CI=true), where .ci/run unpacks ../shared/pegasus/ and a missing Pegasus is a failure."""
    installation = find_pegasus()
    if installation is None:
        _absent("no Pegasus installation: set PEGASUS_HOME or put pegasus-plan on PATH "
                "(.ci/run unpacks ../shared/pegasus/*.tar.xz)")
    return RealPegasus(installation, tmp_path_factory.mktemp("real-pegasus"))


POOL_WALL_TIMES: dict[str, float] = {}  # workflow shape -> its wall time on the pool (s)
POOL_KILLS: dict[str, str] = {}  # "action, wrapped or not" -> what HTCondor and the job saw


def pytest_terminal_summary(terminalreporter) -> None:
    """What the pool runs showed, for the record (never asserted on times): each workflow's
    wall time (DAGMan's jobstate.log), and each kill, hold or vacate beside kickstart alone."""
    if POOL_WALL_TIMES:
        terminalreporter.section("wall time on the personal HTCondor pool")
        for shape, seconds in POOL_WALL_TIMES.items():
            terminalreporter.line(f"{shape:<28} {seconds:5.0f} s")
    if POOL_KILLS:
        terminalreporter.section("condor_rm, hold/release, vacate on the personal pool")
        for trial, outcome in POOL_KILLS.items():
            terminalreporter.line(f"{trial:<34} {outcome}")


@pytest.fixture(scope="session")
def condor_pool() -> Iterator[Any]:
    """One personal HTCondor pool for the whole session (found as a user's machine has
    HTCondor: $CONDOR_CONFIG, else condor_submit_dag on PATH), run by an unprivileged account,
    stopped by its PID at the end; skipped without HTCondor, except under CI."""
    from personal_pool import PoolUnavailable, start_pool

    try:
        pool = start_pool()
    except PoolUnavailable as error:
        _absent(str(error))
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(scope="session")
def pool_pegasus(condor_pool) -> RealPegasus:
    """The real Pegasus, copied where the pool's account can read it, submitting to the pool."""
    installation = find_pegasus()
    if installation is None:
        _absent("no Pegasus installation: set PEGASUS_HOME or put pegasus-plan on PATH "
                "(.ci/run unpacks ../shared/pegasus/*.tar.xz)")
    return RealPegasus(installation, condor_pool.root, pool=condor_pool)
