"""The emulator driven only through globus-sdk 4, as a workflow's tools would drive Globus."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from datetime import datetime

import globus_sdk
import pytest
from globus_sdk.gare import to_gare

from pegasus_globus.emulator import Emulator, approve

from .conftest import (
    PEGASUS_CLIENT_ID,
    TIMERS,
    TIMERS_RS,
    TRANSFER,
    admin,
    login,
    wait_for,
    wait_task,
)


@pytest.fixture
def collections(emulator):
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    tree = emulator.collection_path(source) / "inputs"
    (tree / "deep").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha")
    (tree / "deep" / "b.txt").write_text("beta")
    emulator.collection_path(destination)
    return source, destination


def transfer(client, source, destination, *items, **options):
    data = globus_sdk.TransferData(source, destination, **options)
    for src, dst, *recursive in items:
        data.add_item(src, dst, **({"recursive": recursive[0]} if recursive else {}))
    return client.submit_transfer(data)


# -- Auth ------------------------------------------------------------------------------------

def test_login_with_pkce_gives_tokens_per_resource_server(emulator):
    _, tokens = login(f"{TRANSFER} {TIMERS}[{TRANSFER}] openid")
    assert set(tokens.by_resource_server) == {"transfer.api.globus.org", TIMERS_RS,
                                              "auth.globus.org"}
    transfer_token = tokens.by_resource_server["transfer.api.globus.org"]
    assert transfer_token["refresh_token"]
    assert transfer_token["expires_at_seconds"] > time.time() + 3600


def test_login_without_refresh_tokens_gives_none(emulator):
    _, tokens = login(TRANSFER, refresh=False)
    assert tokens.by_resource_server["transfer.api.globus.org"]["refresh_token"] is None


def test_code_exchange_checks_the_pkce_verifier(emulator):
    client = globus_sdk.NativeAppAuthClient(PEGASUS_CLIENT_ID)
    client.oauth2_start_flow(requested_scopes=TRANSFER)
    code = approve(client.oauth2_get_authorize_url())
    client.oauth2_start_flow(requested_scopes=TRANSFER)  # a new verifier: not the code's
    with pytest.raises(globus_sdk.AuthAPIError) as caught:
        client.oauth2_exchange_code_for_tokens(code)
    assert caught.value.http_status == 401


def test_a_code_is_redeemed_once(emulator):
    client = globus_sdk.NativeAppAuthClient(PEGASUS_CLIENT_ID)
    client.oauth2_start_flow(requested_scopes=TRANSFER)
    code = approve(client.oauth2_get_authorize_url())
    client.oauth2_exchange_code_for_tokens(code)
    with pytest.raises(globus_sdk.AuthAPIError):
        client.oauth2_exchange_code_for_tokens(code)


def test_expired_token_is_refreshed_and_persisted_through_on_refresh(emulator):
    client, tokens = login(TRANSFER)
    token = tokens.by_resource_server["transfer.api.globus.org"]
    refreshed = []
    authorizer = globus_sdk.RefreshTokenAuthorizer(
        token["refresh_token"], client, access_token=token["access_token"],
        expires_at=token["expires_at_seconds"], on_refresh=refreshed.append)
    transfer_client = globus_sdk.TransferClient(authorizer=authorizer)
    transfer_client.get_submission_id()
    admin(emulator, "POST", "_emulator/tokens/expire")
    with pytest.raises(globus_sdk.TransferAPIError) as caught:  # the old token is dead
        globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(
            token["access_token"])).get_submission_id()
    assert caught.value.http_status == 401
    transfer_client.get_submission_id()  # 401, refresh, retry: all inside globus-sdk
    assert len(refreshed) == 1
    assert refreshed[0].by_resource_server["transfer.api.globus.org"]["access_token"] != \
        token["access_token"]


def test_revoked_refresh_token_stops_working(emulator):
    client, tokens = login(TRANSFER)
    refresh_token = tokens.by_resource_server["transfer.api.globus.org"]["refresh_token"]
    client.oauth2_revoke_token(refresh_token)
    with pytest.raises(globus_sdk.AuthAPIError):
        client.oauth2_refresh_token(refresh_token)


def test_a_client_acts_as_itself_and_sees_only_its_own_tasks_and_timers(
        emulator, transfer_client, timers_client, collections):
    source, destination = collections
    mine = transfer(transfer_client, source, destination, ("/inputs/a.txt", "/~/a"))["task_id"]
    timer = new_timer(timers_client, source, destination, runs=1)
    with pytest.raises(globus_sdk.AuthAPIError) as caught:  # unknown to Auth: refused
        stranger = globus_sdk.ConfidentialAppAuthClient(str(uuid.uuid4()), "any")
        stranger.oauth2_client_credentials_tokens(requested_scopes=TRANSFER)
    assert caught.value.http_status == 401
    robot = globus_sdk.ConfidentialAppAuthClient(*emulator.register_client("robot"))
    tokens = robot.oauth2_client_credentials_tokens(
        requested_scopes=f"openid {TRANSFER} {TIMERS}").by_resource_server
    as_robot = {server: globus_sdk.AccessTokenAuthorizer(t["access_token"])
                for server, t in tokens.items()}
    me = globus_sdk.AuthClient(authorizer=as_robot["auth.globus.org"]).userinfo()
    assert me["sub"] == robot.client_id
    assert me["preferred_username"] == f"{robot.client_id}@clients.auth.globus.org"
    robot_transfer = globus_sdk.TransferClient(authorizer=as_robot["transfer.api.globus.org"])
    assert [t["task_id"] for t in robot_transfer.task_list()] == []
    with pytest.raises(globus_sdk.TransferAPIError) as caught:
        robot_transfer.cancel_task(mine)
    assert caught.value.http_status == 404
    robot_timers = globus_sdk.TimersClient(authorizer=as_robot[TIMERS_RS])
    assert robot_timers.list_jobs()["jobs"] == []
    with pytest.raises(globus_sdk.TimersAPIError):
        robot_timers.delete_job(timer["job_id"])
    assert mine in [t["task_id"] for t in transfer_client.task_list()]  # still the user's


def test_userinfo_names_the_emulated_user(emulator):
    _, tokens = login("openid profile email")
    token = tokens.by_resource_server["auth.globus.org"]["access_token"]
    info = globus_sdk.AuthClient(authorizer=globus_sdk.AccessTokenAuthorizer(token)).userinfo()
    assert info["preferred_username"] == "user@example.org"


# -- Transfer ----------------------------------------------------------------------------------

def test_recursive_transfer_copies_the_tree(emulator, transfer_client, collections):
    source, destination = collections
    item = ("/inputs/", "/~/out/", True)
    task_id = transfer(transfer_client, source, destination, item)["task_id"]
    task = wait_task(transfer_client, task_id)
    assert task["status"] == "SUCCEEDED"
    assert (task["files_transferred"], task["bytes_transferred"]) == (2, 9)
    out = emulator.collection_path(destination) / "out"
    assert (out / "a.txt").read_text() == "alpha"
    assert (out / "deep" / "b.txt").read_text() == "beta"


def test_missing_source_keeps_the_task_active_and_retried_as_globus_does(
        emulator, transfer_client, collections):
    """Globus keeps such a task ACTIVE with nice_status FILE_NOT_FOUND and error events, and
    tries again until the deadline: a file that appears meanwhile is transferred."""
    source, destination = collections
    task_id = transfer(transfer_client, source, destination, ("/late.txt", "/~/late"))["task_id"]
    task = wait_for(lambda: (doc := transfer_client.get_task(task_id).data)["nice_status"]
                    == "FILE_NOT_FOUND" and doc)
    assert task["status"] == "ACTIVE" and task["fatal_error"] is None
    assert "/late.txt" in task["nice_status_details"]
    events = list(transfer_client.task_event_list(task_id, query_params={"filter": "is_error:1"}))
    assert events and all(e["code"] == "FILE_NOT_FOUND" for e in events)
    (emulator.collection_path(source) / "late.txt").write_text("late")
    assert wait_task(transfer_client, task_id)["status"] == "SUCCEEDED"
    assert (emulator.collection_path(destination) / "late").read_text() == "late"


def test_the_deadline_ends_a_task_that_keeps_failing(transfer_client, collections):
    source, destination = collections
    deadline = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)).isoformat()
    task_id = transfer(transfer_client, source, destination, ("/nope.txt", "/~/x"),
                       deadline=deadline)["task_id"]
    task = wait_task(transfer_client, task_id)
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "DEADLINE"
    assert "No such file" in task["fatal_error"]["description"]


def test_skip_source_errors_skips_a_missing_source(transfer_client, collections):
    source, destination = collections
    task_id = transfer(transfer_client, source, destination, ("/nope.txt", "/~/x"),
                       ("/inputs/a.txt", "/~/a"), skip_source_errors=True)["task_id"]
    task = wait_task(transfer_client, task_id)
    assert task["status"] == "SUCCEEDED" and task["files_skipped"] == 1


def test_repeated_submission_id_returns_the_original_task(emulator, transfer_client, collections):
    source, destination = collections
    data = globus_sdk.TransferData(source, destination)
    data.add_item("/inputs/a.txt", "/~/a.txt")
    data["submission_id"] = transfer_client.get_submission_id()["value"]
    first = transfer_client.submit_transfer(data)
    second = transfer_client.submit_transfer(data)
    assert second["task_id"] == first["task_id"]
    assert second["code"] == "Duplicate"
    assert len(list(transfer_client.task_list())) == 1


def test_sync_level_skips_files_already_there(transfer_client, collections):
    source, destination = collections
    item = ("/inputs/a.txt", "/~/a.txt")
    wait_task(transfer_client, transfer(transfer_client, source, destination, item)["task_id"])
    again = wait_task(transfer_client, transfer(transfer_client, source, destination, item,
                                                sync_level="checksum")["task_id"])
    assert (again["files_skipped"], again["files_transferred"]) == (1, 0)


def test_preserve_timestamp_keeps_mtime(emulator, transfer_client, collections):
    source, destination = collections
    os.utime(emulator.collection_path(source) / "inputs" / "a.txt", (1_000_000, 1_000_000))
    wait_task(transfer_client, transfer(transfer_client, source, destination,
                                        ("/inputs/a.txt", "/~/a.txt"), preserve_timestamp=True)
              ["task_id"])
    assert (emulator.collection_path(destination) / "a.txt").stat().st_mtime == 1_000_000


def test_delete_task_removes_a_tree_only_when_recursive(emulator, transfer_client, collections):
    source, _ = collections
    flat = globus_sdk.DeleteData(source)
    flat.add_item("/inputs")
    assert wait_task(transfer_client, transfer_client.submit_delete(flat)["task_id"])[
        "status"] == "FAILED"
    deep = globus_sdk.DeleteData(source, recursive=True)
    deep.add_item("/inputs")
    assert wait_task(transfer_client, transfer_client.submit_delete(deep)["task_id"])[
        "status"] == "SUCCEEDED"
    assert not (emulator.collection_path(source) / "inputs").exists()


def test_mkdir_ls_and_stat(transfer_client, collections):
    _, destination = collections
    transfer_client.operation_mkdir(destination, "/~/new")
    with pytest.raises(globus_sdk.TransferAPIError) as caught:
        transfer_client.operation_mkdir(destination, "/~/new")
    assert caught.value.code == "ExternalError.MkdirFailed.Exists"
    assert [e["name"] for e in transfer_client.operation_ls(destination, path="/~/")] == ["new"]
    assert transfer_client.operation_stat(destination, "/new")["type"] == "dir"


def test_copies_get_a_new_files_mode_and_an_empty_transfer_is_named(emulator, transfer_client,
                                                                    collections):
    source, destination = collections
    os.chmod(emulator.collection_path(source) / "inputs" / "a.txt", 0o640)
    wait_task(transfer_client, transfer(transfer_client, source, destination,
                                        ("/inputs/a.txt", "/~/a.txt"))["task_id"])
    umask = os.umask(0)
    os.umask(umask)
    assert (emulator.resolve(destination, "/~/a.txt").stat().st_mode & 0o777) == 0o666 & ~umask
    with pytest.raises(globus_sdk.TransferAPIError) as caught:
        transfer_client.submit_transfer(globus_sdk.TransferData(source, destination))
    assert caught.value.code == "ClientError.BadRequest.NoTransferItems"
    listing = transfer_client.operation_ls(source, path="/inputs")
    assert listing["path"] == "/inputs/"  # a directory, as Globus answers


def test_delete_destination_extra_and_filter_rules(emulator, transfer_client, collections):
    source, destination = collections
    stale = emulator.collection_path(destination) / "mirror"
    (stale / "old").mkdir(parents=True)
    (stale / "old" / "x").write_text("x")
    (stale / "keep.tmp").write_text("excluded: never judged")
    data = globus_sdk.TransferData(source, destination, delete_destination_extra=True)
    data.add_item("/inputs/", "/mirror/", recursive=True)
    data.add_filter_rule("*.tmp", method="exclude")
    assert wait_task(transfer_client, transfer_client.submit_transfer(data)["task_id"])[
        "status"] == "SUCCEEDED"
    assert sorted(str(p.relative_to(stale)) for p in stale.rglob("*")) == [
        "a.txt", "deep", "deep/b.txt", "keep.tmp"]
    bad = globus_sdk.TransferData(source, destination)
    bad.add_item("/inputs/", "/m2/", recursive=True)
    bad["filter_rules"] = [{"method": "drop", "name": "*"}]
    with pytest.raises(globus_sdk.TransferAPIError) as caught:
        transfer_client.submit_transfer(bad)
    assert caught.value.code == "ClientError.BadRequest.InvalidFilterRule"


def test_successful_transfers_skipped_errors_pause_info_update_and_rename(
        emulator, transfer_client, collections):
    source, destination = collections
    done = transfer(transfer_client, source, destination, ("/inputs/", "/~/copy/", True),
                    ("/absent", "/~/absent"), skip_source_errors=True)["task_id"]
    assert wait_task(transfer_client, done)["status"] == "SUCCEEDED"
    copied = {(t["source_path"], t["destination_path"])
              for t in transfer_client.task_successful_transfers(done)}
    assert copied == {("/inputs/a.txt", "/copy/a.txt"), ("/inputs/deep/b.txt",
                                                         "/copy/deep/b.txt")}
    skipped = list(transfer_client.task_skipped_errors(done))
    assert [(e["source_path"], e["error_code"]) for e in skipped] == [("/absent",
                                                                       "FILE_NOT_FOUND")]
    assert transfer_client.task_pause_info(done)["pause_rules"] == []

    emulator.mark_collection(destination, inactive=True)
    running = transfer(transfer_client, source, destination, ("/inputs/a.txt", "/~/b"))
    transfer_client.update_task(running["task_id"], {"label": "relabelled"})
    assert transfer_client.get_task(running["task_id"])["label"] == "relabelled"
    transfer_client.cancel_task(running["task_id"])

    transfer_client.operation_rename(source, "/inputs/a.txt", "/inputs/z.txt")
    assert (emulator.collection_path(source) / "inputs" / "z.txt").read_text() == "alpha"
    with pytest.raises(globus_sdk.TransferAPIError) as caught:
        transfer_client.operation_rename(source, "/inputs/nothing", "/x")
    assert caught.value.http_status == 404


def test_cancel_stops_a_copy_in_flight(emulator, transfer_client, collections):
    source, destination = collections
    (emulator.collection_path(source) / "big").write_bytes(b"x" * 100_000)
    # 100 kB at 160 B per emulated second, on a clock 600 times faster: about 1 s real
    admin(emulator, "PATCH", "_emulator/settings", {"bandwidth": 160})
    task = transfer(transfer_client, source, destination, ("/big", "/~/big"))["task_id"]
    wait_for(lambda: transfer_client.get_task(task)["status"] == "ACTIVE")
    time.sleep(0.3)  # copying
    transfer_client.cancel_task(task)
    time.sleep(1.2)  # past when the copy would have landed
    assert not emulator.resolve(destination, "/~/big").exists()
    assert not [p for p in emulator.collection_path(destination).rglob("*") if p.is_file()]


def test_cancel_fails_an_inactive_task(emulator, transfer_client, collections):
    source, destination = collections
    emulator.mark_collection(destination, inactive=True)
    task_id = transfer(transfer_client, source, destination, ("/inputs/a.txt", "/~/a"))["task_id"]
    wait_for(lambda: transfer_client.get_task(task_id)["status"] == "INACTIVE")
    assert transfer_client.cancel_task(task_id)["code"] == "Canceled"
    task = transfer_client.get_task(task_id)
    assert (task["status"], task["fatal_error"]["code"]) == ("FAILED", "CANCELED")
    assert not (emulator.collection_path(destination) / "a").exists()


def test_consent_required_collection_needs_the_data_access_dependency(emulator, collections):
    source, destination = collections
    emulator.mark_collection(destination, consent_required=True)
    _, tokens = login(TRANSFER)
    plain = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(
        tokens.by_resource_server["transfer.api.globus.org"]["access_token"]))
    with pytest.raises(globus_sdk.TransferAPIError) as caught:
        transfer(plain, source, destination, ("/inputs/a.txt", "/~/a"))
    assert caught.value.http_status == 403 and caught.value.code == "ConsentRequired"
    required = to_gare(caught.value).authorization_parameters.required_scopes
    assert f"https://auth.globus.org/scopes/{destination}/data_access" in required[0]

    _, tokens = login(f"{TRANSFER}[*https://auth.globus.org/scopes/{destination}/data_access]")
    consented = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(
        tokens.by_resource_server["transfer.api.globus.org"]["access_token"]))
    task_id = transfer(consented, source, destination, ("/inputs/a.txt", "/~/a"))["task_id"]
    assert wait_task(consented, task_id)["status"] == "SUCCEEDED"


def test_collection_kinds_show_in_endpoint_documents_and_guest_data_access_is_refused(
        emulator, transfer_client):
    mapped, guest = str(uuid.uuid4()), str(uuid.uuid4())
    emulator.mark_collection(mapped, consent_required=True, high_assurance=True)
    emulator.mark_collection(guest, guest=True)
    shown = transfer_client.get_endpoint(mapped)
    assert (shown["entity_type"], shown["high_assurance"]) == ("GCSv5_mapped_collection", True)
    assert shown["gcs_version"] and shown["owner_id"] and "https_server" in shown.data
    assert transfer_client.get_endpoint(guest)["entity_type"] == "GCSv5_guest_collection"
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as caught:  # refused at authorize, as by Auth
        login(f"{TRANSFER}[*https://auth.globus.org/scopes/{guest}/data_access]")
    assert caught.value.code == 400 and b"guest collection" in caught.value.read()
    login(f"{TRANSFER}[*https://auth.globus.org/scopes/{mapped}/data_access]")  # fine
    with pytest.raises(ValueError):
        emulator.mark_collection(guest, consent_required=True)


def test_the_gcs_manager_api_shows_a_collection_to_a_manage_collections_token(
        emulator, transfer_client, monkeypatch):
    """A GCSv5 collection's endpoint document names its endpoint (owner_id) and that
    endpoint's Manager URL, an https:// one (globus-cli takes no other), which the emulator
    serves on its own port with a certificate GLOBUS_SDK_VERIFY_SSL trusts. The Manager API
    wants the endpoint's manage_collections scope; a Transfer token is refused, 401."""
    monkeypatch.setenv("GLOBUS_SDK_VERIFY_SSL", emulator.tls_environment[
        "GLOBUS_SDK_VERIFY_SSL"])
    mapped, guest = str(uuid.uuid4()), str(uuid.uuid4())
    emulator.mark_collection(guest, guest=True)
    shown = transfer_client.get_endpoint(mapped)
    endpoint, manager = shown["owner_id"], shown["gcs_manager_url"]
    assert manager.startswith("https://") and transfer_client.get_endpoint(guest)[
        "gcs_manager_url"] == manager
    assert transfer_client.get_endpoint(endpoint)["entity_type"] == "GCSv5_endpoint"
    scope = globus_sdk.scopes.GCSEndpointScopes(endpoint).manage_collections

    refused = globus_sdk.GCSClient(manager, authorizer=transfer_client.authorizer)
    with pytest.raises(globus_sdk.GCSAPIError) as caught:
        refused.get_collection(mapped)
    assert (caught.value.http_status, caught.value.code) == (401, "unauthorized")

    _, tokens = login(str(scope))
    gcs = globus_sdk.GCSClient(manager, authorizer=globus_sdk.AccessTokenAuthorizer(
        tokens.by_resource_server[endpoint]["access_token"]))
    for collection, kind in ((mapped, "mapped"), (guest, "guest")):
        document = gcs.get_collection(collection)
        assert (document["id"], document["collection_type"], document["display_name"]) == (
            collection, kind, transfer_client.get_endpoint(collection)["display_name"])
    assert gcs.get_collection(guest)["mapped_collection_id"] == transfer_client.get_endpoint(
        guest)["host_endpoint_id"]


def test_a_high_assurance_collection_wants_a_login_younger_than_its_timeout(emulator):
    """A refresh is no authentication: once the login is older than the collection's
    timeout, its operations fail with authorization_parameters (a GARE asking for a fresh
    login) until the user logs in again; userinfo says when that login was."""
    collection, plain = str(uuid.uuid4()), str(uuid.uuid4())
    emulator.mark_collection(collection, high_assurance=True)
    client, tokens = login(f"{TRANSFER} openid profile")
    token = tokens.by_resource_server["transfer.api.globus.org"]
    transfer_client = globus_sdk.TransferClient(authorizer=globus_sdk.RefreshTokenAuthorizer(
        token["refresh_token"], client), retry_config=globus_sdk.transport.RetryConfig(
            max_retries=1, transient_error_status_codes=()))  # a refresh on 401, no more
    auth = globus_sdk.AuthClient(authorizer=globus_sdk.AccessTokenAuthorizer(
        tokens.by_resource_server["auth.globus.org"]["access_token"]))
    me = auth.userinfo()
    assert abs(me["last_authentication"] - time.time()) < 60
    assert transfer_client.get_endpoint(collection)["authentication_timeout_mins"] == 30
    transfer_client.operation_ls(collection)
    admin(emulator, "POST", "_emulator/sessions/expire")
    admin(emulator, "POST", "_emulator/tokens/expire")  # a refreshed token: same old session
    with pytest.raises(globus_sdk.TransferAPIError) as caught:
        transfer_client.operation_ls(collection)
    error = caught.value
    assert (error.http_status, error.code) == (502, "ExternalError.DirListingFailed.LoginFailed")
    gare = to_gare(error)
    assert gare.authorization_parameters.session_required_identities == [
        me["sub"]] and gare.authorization_parameters.prompt == "login"
    transfer_client.operation_ls(plain)  # only high-assurance collections care
    _, fresh = login(TRANSFER)
    globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(
        fresh.by_resource_server["transfer.api.globus.org"]["access_token"])
    ).operation_ls(collection)


def test_permission_denied_is_retried_until_the_deadline(emulator, transfer_client,
                                                         collections):
    source, destination = collections
    emulator.mark_collection(source, permission_denied=True)
    deadline = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)).isoformat()
    task_id = transfer(transfer_client, source, destination, ("/inputs/a.txt", "/~/a"),
                       deadline=deadline)["task_id"]
    wait_for(lambda: transfer_client.get_task(task_id)["nice_status"] == "PERMISSION_DENIED")
    assert transfer_client.get_task(task_id)["status"] == "ACTIVE"
    assert wait_task(transfer_client, task_id)["fatal_error"]["code"] == "DEADLINE"


def test_faults_never_duplicate_a_task_or_lose_an_item(emulator, transfer_client, collections):
    """globus-sdk retries 502/503 and dropped answers; the submission id keeps it one task."""
    source, destination = collections
    files = emulator.collection_path(source) / "many"
    files.mkdir()
    for index in range(20):
        (files / f"{index}.txt").write_text(str(index))
    admin(emulator, "PATCH", "_emulator/settings", {"fault_rate": 0.2})
    data = globus_sdk.TransferData(source, destination)
    for index in range(20):
        data.add_item(f"/many/{index}.txt", f"/~/many/{index}.txt")
    task_id = transfer_client.submit_transfer(data)["task_id"]
    assert wait_task(transfer_client, task_id)["status"] == "SUCCEEDED"
    admin(emulator, "PATCH", "_emulator/settings", {"fault_rate": 0})
    assert len(list(transfer_client.task_list())) == 1
    copied = sorted(p.name for p in (emulator.collection_path(destination) / "many").iterdir())
    assert copied == sorted(f"{i}.txt" for i in range(20))
    assert admin(emulator, "GET", "_emulator/stats")["faults"] > 0


# -- Timers ------------------------------------------------------------------------------------

def new_timer(timers_client, source, destination, runs, interval=60):
    body = globus_sdk.TransferData(source, destination)
    body.add_item("/inputs/", "/~/backup/", recursive=True)
    schedule = globus_sdk.RecurringTimerSchedule(
        interval, end={"condition": "iterations", "count": runs})
    timer = globus_sdk.TransferTimer(name="backup", schedule=schedule, body=body)
    return timers_client.create_timer(timer)["timer"]


def test_timer_runs_exactly_its_count(emulator, timers_client, collections):
    source, destination = collections
    timer = new_timer(timers_client, source, destination, runs=3)
    assert timer["status"] == "new"
    job = wait_for(lambda: (j := timers_client.get_job(timer["job_id"]))["next_run"] is None and j)
    time.sleep(0.3)  # three more intervals at x600: a fourth run would show now
    job = timers_client.get_job(timer["job_id"])
    assert (job["number_of_runs"], job["status"]) == (3, "loaded")
    tasks = [r["data"]["action_id"] for r in job["results"]["data"]]
    assert len(set(tasks)) == 3
    for result in job["results"]["data"]:  # on a clock 600 times faster, still in order
        assert result["data"]["completion_time"] >= result["data"]["start_time"]
    assert (emulator.collection_path(destination) / "backup" / "deep" / "b.txt").exists()


def test_timer_runs_stay_on_the_start_plus_interval_grid(emulator, timers_client, collections):
    """Run k happens at start + k * interval (give or take the scheduler's tick), never drifting."""
    source, destination = collections
    timer = new_timer(timers_client, source, destination, runs=4, interval=120)
    job = wait_for(lambda: (j := timers_client.get_job(timer["job_id"]))["number_of_runs"] == 4
                   and j)
    start = datetime.fromisoformat(timer["schedule"]["start"])
    ran = sorted(datetime.fromisoformat(r["ran_at"]) for r in job["results"]["data"])
    tick = 0.05 * 600  # a generous scheduler tick, in emulated seconds
    for k, when in enumerate(ran):
        assert 0 <= (when - start).total_seconds() - 120 * k <= tick, (k, when, start)


def test_pause_stops_runs_and_resume_restarts_them(timers_client, collections):
    source, destination = collections
    timer = new_timer(timers_client, source, destination, runs=1000)
    wait_for(lambda: timers_client.get_job(timer["job_id"])["number_of_runs"] >= 1)
    timers_client.pause_job(timer["job_id"])
    paused = timers_client.get_job(timer["job_id"])
    assert paused["status"] == "inactive" and paused["inactive_reason"]["cause"] == "user"
    time.sleep(0.3)
    assert timers_client.get_job(timer["job_id"])["number_of_runs"] == paused["number_of_runs"]
    timers_client.resume_job(timer["job_id"])
    wait_for(lambda: timers_client.get_job(timer["job_id"])["number_of_runs"]
             > paused["number_of_runs"])


def test_deleted_timer_stops_and_leaves_the_list(timers_client, collections):
    source, destination = collections
    timer = new_timer(timers_client, source, destination, runs=1000)
    assert timers_client.delete_job(timer["job_id"])["status"] == "deleted"
    runs = timers_client.get_job(timer["job_id"])["number_of_runs"]
    time.sleep(0.3)
    assert timers_client.get_job(timer["job_id"])["number_of_runs"] == runs
    assert timers_client.list_jobs()["jobs"] == []
    shown = timers_client.list_jobs(query_params={"filter_status": "deleted"})["jobs"]
    assert [j["job_id"] for j in shown] == [timer["job_id"]]


def test_timer_without_consent_goes_inactive_until_resumed_with_new_credentials(
        emulator, timers_client, collections):
    source, destination = collections
    emulator.mark_collection(destination, consent_required=True)
    timer = new_timer(timers_client, source, destination, runs=2)
    job = wait_for(lambda: (j := timers_client.get_job(timer["job_id"]))["status"] == "inactive"
                   and j)
    assert job["inactive_reason"]["cause"] == "globus_auth_requirements"
    required = job["inactive_reason"]["detail"]["authorization_parameters"]["required_scopes"]
    assert f"{destination}/data_access" in required[0]

    data_access = f"*https://auth.globus.org/scopes/{destination}/data_access"
    _, tokens = login(f"{TIMERS}[{TRANSFER}[{data_access}]]")
    consented = globus_sdk.TimersClient(authorizer=globus_sdk.AccessTokenAuthorizer(
        tokens.by_resource_server[TIMERS_RS]["access_token"]))
    consented.resume_job(timer["job_id"], update_credentials=True)
    job = wait_for(lambda: (j := consented.get_job(timer["job_id"]))["number_of_runs"] == 2 and j)
    assert job["status"] == "loaded"


def test_a_timer_made_with_the_bare_timer_scope_runs(emulator, collections):
    """globus-sdk's TimersClient default scope: Globus adds the transfer dependency itself."""
    _, tokens = login(TIMERS)
    client = globus_sdk.TimersClient(authorizer=globus_sdk.AccessTokenAuthorizer(
        tokens.by_resource_server[TIMERS_RS]["access_token"]))
    timer = new_timer(client, *collections, runs=1)
    job = wait_for(lambda: (j := client.get_job(timer["job_id"]))["number_of_runs"] == 1 and j)
    assert job["status"] == "loaded"


@pytest.mark.parametrize("callback", [
    "https://actions.automate.globus.org/transfer/transfer/run",
    "https://default.actions.automate.globus.org/transfer/transfer/run",  # what 0.2.9 sends
], ids=["production form", "legacy CLI's default environment"])
def test_a_legacy_job_created_with_post_jobs_runs(emulator, collections, callback):
    """The Globus Timer CLI's ``job transfer``: ``POST /jobs/`` with a Transfer action
    provider body, under ``timer[<transfer action provider scope>]``."""
    action_scope = "https://auth.globus.org/scopes/actions.globus.org/transfer/transfer"
    _, tokens = login(f"{TIMERS}[{action_scope}]")
    client = globus_sdk.TimersClient(authorizer=globus_sdk.AccessTokenAuthorizer(
        tokens.by_resource_server[TIMERS_RS]["access_token"]))
    source, destination = collections
    job = client.create_job({
        "name": "legacy", "start": datetime.now(dt.timezone.utc).isoformat(), "interval": 3600,
        "callback_url": callback,
        "callback_body": {"body": {"source_endpoint_id": source,
                                   "destination_endpoint_id": destination, "transfer_items": [
                                       {"source_path": "/inputs/a.txt",
                                        "destination_path": "/~/legacy.txt",
                                        "recursive": False}]}},
        "stop_after": {"n_runs": 1}})
    assert job.http_status == 201 and job["stop_after"]["n_runs"] == 1
    wait_for(lambda: emulator.resolve(destination, "/~/legacy.txt").exists(), timeout=20)


def test_deleting_a_deleted_timer_is_a_404(timers_client, collections):
    timer = new_timer(timers_client, *collections, runs=5)
    timers_client.delete_job(timer["job_id"])
    with pytest.raises(globus_sdk.TimersAPIError) as caught:
        timers_client.delete_job(timer["job_id"])
    assert caught.value.http_status == 404


def test_an_interval_that_would_overflow_is_refused_and_the_service_goes_on(
        emulator, timers_client, collections):
    with pytest.raises(globus_sdk.TimersAPIError) as caught:
        new_timer(timers_client, *collections, runs=2, interval=10 ** 15)
    assert caught.value.http_status == 422
    timer = new_timer(timers_client, *collections, runs=1)
    with emulator.state.lock:  # as saved by an older emulator that accepted it
        emulator.state["timers"][timer["job_id"]]["schedule"]["interval_seconds"] = 10 ** 15
    later = new_timer(timers_client, *collections, runs=1)
    wait_for(lambda: timers_client.get_job(later["job_id"])["number_of_runs"] == 1)
    assert timers_client.list_jobs()["jobs"]  # still answering


def test_interval_below_a_minute_is_refused(timers_client, collections):
    source, destination = collections
    with pytest.raises(globus_sdk.TimersAPIError) as caught:
        new_timer(timers_client, source, destination, runs=1, interval=30)
    assert caught.value.http_status == 422


def test_a_task_resumed_after_a_restart_counts_each_file_once(tmp_path, monkeypatch):
    root = tmp_path / "g"
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    with Emulator(root, bandwidth=2000) as first:  # half a second per 1 kB file
        for name, value in first.environment.items():
            monkeypatch.setenv(name, value)
        for name in ("a", "b", "c"):
            (first.collection_path(source) / name).write_bytes(b"x" * 1000)
        _, tokens = login(TRANSFER)
        token = tokens.by_resource_server["transfer.api.globus.org"]["access_token"]
        tc = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(token))
        task = transfer(tc, source, destination, ("/a", "/~/a"), ("/b", "/~/b"),
                        ("/c", "/~/c"))["task_id"]
        wait_for(lambda: tc.get_task(task)["files_transferred"] == 1)
    first.state["tasks"][task]["doc"]["status"] = "FAILED"  # its worker thread stops
    with Emulator(root, bandwidth=2000) as second:
        for name, value in second.environment.items():
            monkeypatch.setenv(name, value)
        again = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(token))
        doc = wait_task(again, task)
    assert doc["status"] == "SUCCEEDED", doc["fatal_error"]
    assert (doc["files_transferred"], doc["bytes_transferred"], doc["subtasks_succeeded"]) == (
        3, 3000, 3)


def test_restart_keeps_tokens_tasks_and_timers(tmp_path, monkeypatch):
    root = tmp_path / "g"
    with Emulator(root, time_scale=600) as emulator:
        monkeypatch.setenv("GLOBUS_SDK_SERVICE_URL_AUTH", emulator.url)
        _, tokens = login(f"{TRANSFER} {TIMERS}[{TRANSFER}]")
    with Emulator(root, time_scale=600) as emulator:
        for name, value in emulator.environment.items():
            monkeypatch.setenv(name, value)
        token = tokens.by_resource_server["transfer.api.globus.org"]["access_token"]
        again = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(token))
        again.get_submission_id()  # the token issued before the restart still works
