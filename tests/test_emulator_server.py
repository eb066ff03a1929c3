"""The emulator as a server: its command line, bad input, and many clients at once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import globus_sdk
import pytest

from .conftest import TRANSFER, admin, login, wait_for, wait_task


def raw(emulator, method: str, path: str, body: bytes | None = None,
        token: str | None = None) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(emulator.url + path.lstrip("/"), data=body, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error), dict(error.headers)


@pytest.fixture
def token(emulator) -> str:
    return login(TRANSFER)[1].by_resource_server["transfer.api.globus.org"]["access_token"]


def test_malformed_json_is_a_400_in_transfer_style(emulator, token):
    status, body, _ = raw(emulator, "POST", "/v0.10/transfer", b"{not json", token)
    assert status == 400
    assert set(body) >= {"code", "message", "request_id", "resource"}


def test_unknown_route_is_a_404_and_wrong_method_a_405(emulator, token):
    assert raw(emulator, "GET", "/v0.10/no/such/thing", token=token)[0] == 404
    status, body, headers = raw(emulator, "DELETE", "/v0.10/submission_id", token=token)
    assert status == 405 and headers["Allow"] == "GET"
    assert "code" in body


def test_bad_uuid_in_path_is_a_400(emulator, token):
    status, body, _ = raw(emulator, "GET", "/v0.10/endpoint/not-a-uuid", token=token)
    assert status == 400 and "not a UUID" in body["message"]


def test_bad_uuid_in_timers_is_a_422_in_timers_style(emulator):
    scopes = f"{globus_sdk.TimersClient.scopes.timer}[{TRANSFER}]"
    timers_token = login(scopes)[1].by_resource_server[
        globus_sdk.TimersClient.resource_server]["access_token"]
    status, body, _ = raw(emulator, "GET", "/jobs/nonsense", token=timers_token)
    assert status == 422 and set(body["error"]) == {"code", "detail", "status"}


@pytest.mark.parametrize("path", ["/../outside.txt", "/~/../../etc/passwd", "/a/../../b"])
def test_paths_escaping_a_collection_are_refused(emulator, token, path):
    collection = str(uuid.uuid4())
    status, body, _ = raw(emulator, "GET",
                          f"/v0.10/operation/endpoint/{collection}/stat?path={path}", token=token)
    assert status == 403 and body["code"] == "ClientError.BadRequest.PathOutsideCollection"


def test_symlink_out_of_a_collection_is_refused(emulator, token, tmp_path):
    collection = str(uuid.uuid4())
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path, emulator.collection_path(collection) / "link")
    status, _, _ = raw(emulator, "GET",
                       f"/v0.10/operation/endpoint/{collection}/stat?path=/link/secret",
                       token=token)
    assert status == 403


def test_inside_follows_links_as_realpath_does_looking_only_below_the_root(tmp_path):
    """``inside`` stats only the components below a collection's root (a realpath of every
    component, several per file a task moved, was half the worker's time): whatever links
    lie below the root (relative, absolute, out, looping, through ".."), it says what
    os.path.realpath says."""
    import itertools

    from pegasus_globus.emulator.paths import inside

    real = tmp_path / "root"
    (real / "d").mkdir(parents=True)
    (real / "d" / "f").write_text("f")
    base = tmp_path / "link-to-root"  # the root itself reached through a link
    base.symlink_to(real)
    for name, target in (("out", tmp_path), ("rel", "d"), ("dotdot", "../root/d"),
                         ("loop", "loop"), ("abs", real / "d"), ("escape", "../..")):
        (real / name).symlink_to(target)
    names = ["d", "f", "out", "rel", "dotdot", "loop", "abs", "escape", "missing", "."]
    for depth in (1, 2, 3):
        for parts in itertools.product(names, repeat=depth):
            local = base.joinpath(*parts)
            truth = os.path.realpath(local)
            expected = truth == str(real) or truth.startswith(f"{real}/")
            assert inside(base, local) == expected, local


def test_a_recursive_transfer_never_follows_a_link_out_of_a_collection(emulator, transfer_client,
                                                                      tmp_path):
    """A link inside a collection to /etc/passwd, and a destination directory linked to a
    place outside: nothing outside is read or written."""
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    tree = emulator.collection_path(source) / "tree"
    tree.mkdir()
    (tree / "ok.txt").write_text("ok")
    (tree / "leak").symlink_to(outside / "secret")
    data = globus_sdk.TransferData(source, destination, deadline="2100-01-01T00:00:00+00:00")
    data.add_item("/tree/", "/copy/", recursive=True)
    task = transfer_client.submit_transfer(data)["task_id"]
    events = wait_for(lambda: [e for e in transfer_client.task_event_list(task)
                               if e["is_error"]], timeout=20)
    assert events[0]["code"] == "PERMISSION_DENIED"
    transfer_client.cancel_task(task)
    assert not (emulator.collection_path(destination) / "copy" / "leak").exists()

    # a directory inside the destination tree that links out of its collection
    (tree / "leak").unlink()
    (tree / "sub").mkdir()
    (tree / "sub" / "f").write_text("f")
    (emulator.collection_path(destination) / "copy2").mkdir()
    (emulator.collection_path(destination) / "copy2" / "sub").symlink_to(outside)
    data = globus_sdk.TransferData(source, destination, deadline="2100-01-01T00:00:00+00:00")
    data.add_item("/tree/", "/copy2/", recursive=True)
    task = transfer_client.submit_transfer(data)["task_id"]
    wait_for(lambda: [e for e in transfer_client.task_event_list(task) if e["is_error"]])
    transfer_client.cancel_task(task)
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_skip_source_errors_skips_a_link_out_of_the_collection(emulator, transfer_client,
                                                              tmp_path):
    """With skip_source_errors, the link out is one skipped file, recorded as the service
    records skipped errors; the rest of the tree is copied and the task ends."""
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    (tmp_path / "secret").write_text("secret")
    tree = emulator.collection_path(source) / "tree"
    tree.mkdir()
    (tree / "ok.txt").write_text("ok")
    (tree / "leak").symlink_to(tmp_path / "secret")
    data = globus_sdk.TransferData(source, destination, skip_source_errors=True,
                                   deadline="2100-01-01T00:00:00+00:00")
    data.add_item("/tree/", "/copy/", recursive=True)
    task = transfer_client.submit_transfer(data)["task_id"]
    done = wait_task(transfer_client, task)
    assert (done["status"], done["files_transferred"], done["subtasks_skipped_errors"]) == (
        "SUCCEEDED", 1, 1)
    copy = emulator.collection_path(destination) / "copy"
    assert sorted(p.name for p in copy.iterdir()) == ["ok.txt"]
    skipped = list(transfer_client.task_skipped_errors(task))
    assert [(e["source_path"], e["destination_path"], e["error_code"], e["is_symlink"])
            for e in skipped] == [("/tree/leak", "/copy/leak", "PERMISSION_DENIED", True)]


def test_a_timer_run_skips_a_source_linked_out_of_the_collection(emulator, timers_client,
                                                                 transfer_client, tmp_path):
    """A timer's run is checked by no submission: its task meets the link out itself, and
    skips it like any unreadable source instead of ending its worker with the task ACTIVE."""
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    (tmp_path / "secret").write_text("secret")
    root = emulator.collection_path(source)
    (root / "leak").symlink_to(tmp_path / "secret")
    (root / "ok.txt").write_text("ok")
    body = globus_sdk.TransferData(source, destination, skip_source_errors=True)
    body.add_item("/leak", "/~/leak")
    body.add_item("/ok.txt", "/~/ok.txt")
    timer = timers_client.create_timer(globus_sdk.TransferTimer(
        name="links", schedule=globus_sdk.OnceTimerSchedule(), body=body))["timer"]
    task = wait_for(lambda: [r["data"]["action_id"] for r in timers_client.get_job(
        timer["job_id"])["results"]["data"]])[0]
    done = wait_task(transfer_client, task)
    assert (done["status"], done["files_transferred"], done["subtasks_skipped_errors"]) == (
        "SUCCEEDED", 1, 1)
    assert not (emulator.collection_path(destination) / "leak").exists()


def test_concurrent_mkdirs_of_one_path_never_answer_500(emulator, token):
    """Found by bench.bridge: two uploads into one new directory raced to a 500 (which
    globus-sdk then retried; here the answers are read raw)."""
    from concurrent.futures import ThreadPoolExecutor

    collection = str(uuid.uuid4())
    root = emulator.collection_path(collection)
    body = json.dumps({"DATA_TYPE": "mkdir", "path": "/same"}).encode()

    def mkdir(_: int) -> int:
        return raw(emulator, "POST", f"/v0.10/operation/endpoint/{collection}/mkdir", body,
                   token)[0]
    for _ in range(10):
        if (root / "same").exists():
            (root / "same").rmdir()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(mkdir, range(8)))
        assert set(statuses) <= {202, 502}, statuses  # made, or Exists: never a 500


def test_a_nul_byte_in_a_path_is_a_400(emulator, token):
    collection = str(uuid.uuid4())
    status, body, _ = raw(emulator, "GET", f"/v0.10/operation/endpoint/{collection}/ls"
                          "?path=/a%00b", token=token)
    assert status == 400 and "NUL" in body["message"]


@pytest.mark.parametrize("length,status", [("abc", 400), ("-5", 400), (str(10 ** 12), 413)])
def test_a_bad_content_length_is_answered_not_allocated(emulator, token, length, status):
    import socket

    with socket.create_connection(emulator._httpd.server_address[:2], timeout=10) as connection:
        connection.sendall(f"POST /v0.10/transfer HTTP/1.1\r\nHost: x\r\nAuthorization: "
                           f"Bearer {token}\r\nContent-Length: {length}\r\n\r\n".encode())
        answer = connection.recv(65536).decode()
    assert answer.startswith(f"HTTP/1.1 {status} ")
    assert raw(emulator, "GET", "/v0.10/submission_id", token=token)[0] == 200  # still serving


def test_idle_connections_are_closed(emulator, monkeypatch):
    import socket

    from pegasus_globus.emulator import server

    assert server._Handler.timeout == server.IDLE_TIMEOUT  # not None: no idle thread forever
    monkeypatch.setattr(server._Handler, "timeout", 0.5)
    with socket.create_connection(emulator._httpd.server_address[:2], timeout=10) as connection:
        connection.settimeout(5)
        assert connection.recv(1) == b""  # closed by the server, not by us


def test_answers_are_sent_without_waiting_for_the_clients_ack(emulator, monkeypatch):
    """TCP_NODELAY on every accepted connection: an answer is two writes (head, body), and
    with Nagle's algorithm the body waited for the client's delayed ACK, up to 40 ms a request
    on Linux, which dwarfed everything the benches measure."""
    import socket

    from pegasus_globus.emulator import server

    seen = []
    setup = server._Handler.setup

    def recording(handler: Any) -> None:  # before the request is read: before the answer
        setup(handler)
        seen.append(handler.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    monkeypatch.setattr(server._Handler, "setup", recording)
    assert raw(emulator, "GET", "/_emulator/settings")[0] == 200
    assert seen and all(seen)


def test_the_stats_count_connections_apart_from_requests(emulator, token):
    """A client that keeps its connection alive shows as one connection for many requests."""
    import requests

    admin(emulator, "DELETE", "_emulator/stats")
    session = requests.Session()
    for _ in range(5):
        assert session.get(f"{emulator.url}v0.10/submission_id",
                           headers={"Authorization": f"Bearer {token}"}).status_code == 200
    session.close()
    stats = admin(emulator, "GET", "_emulator/stats")
    assert stats["total"] == 5  # admin calls are not counted as requests...
    assert stats["connections"] == 2  # ...but their connections are: the session's, this one


def _code(emulator, query: str) -> str:
    request = urllib.request.Request(f"{emulator.url}v2/oauth2/authorize?{query}",
                                     headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)["code"]


def test_a_native_app_needs_pkce_and_the_same_redirect_uri(emulator):
    import urllib.parse

    client = "d7382f5a-4ea3-4b69-b094-99c392fc820d"
    form = urllib.parse.urlencode
    no_pkce = _code(emulator, f"client_id={client}&scope=openid&redirect_uri=http://a/")
    status, body, _ = raw(emulator, "POST", "/v2/oauth2/token", form({
        "grant_type": "authorization_code", "code": no_pkce, "client_id": client,
        "redirect_uri": "http://a/"}).encode())
    assert status == 401 and "PKCE" in body["error_description"]
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636's example
    other = _code(emulator, f"client_id={client}&scope=openid&redirect_uri=http://a/"
                  f"&code_challenge={challenge}&code_challenge_method=S256")
    status, body, _ = raw(emulator, "POST", "/v2/oauth2/token", form({
        "grant_type": "authorization_code", "code": other, "client_id": client,
        "redirect_uri": "http://b/",
        "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"}).encode())
    assert status == 401 and "redirect_uri" in body["error_description"]


def _basic(emulator, path: str, form: dict[str, str], user: str, password: str) -> tuple[int, Any]:
    """POST a form with HTTP Basic credentials, as a confidential client sends them."""
    import base64
    import urllib.parse

    credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(emulator.url + path.lstrip("/"), method="POST",
                                     data=urllib.parse.urlencode(form).encode(),
                                     headers={"Authorization": f"Basic {credentials}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_an_empty_secret_does_not_spare_a_native_app_pkce(emulator):
    client = "d7382f5a-4ea3-4b69-b094-99c392fc820d"
    code = _code(emulator, f"client_id={client}&scope=openid")
    status, body = _basic(emulator, "/v2/oauth2/token",
                          {"grant_type": "authorization_code", "code": code}, client, "")
    assert status == 401 and "PKCE" in body["error_description"]


def test_a_client_credentials_id_token_names_the_client(emulator):
    """globus-sdk verifies the ID token (signature, audience) and reads who it names."""
    robot = globus_sdk.ConfidentialAppAuthClient(*emulator.register_client("robot"))
    tokens = robot.oauth2_client_credentials_tokens(requested_scopes="openid profile email")
    claims = tokens.decode_id_token()
    assert claims["sub"] == robot.client_id != emulator.auth.identity_id
    assert claims["preferred_username"] == f"{robot.client_id}@clients.auth.globus.org"
    assert claims.get("email") is None


def test_registering_a_client_needs_a_user_who_manages_projects(emulator):
    new = json.dumps({"client": {"name": "mine", "public_client": False}}).encode()
    assert raw(emulator, "POST", "/v2/api/clients", new)[0] == 401
    plain = login("openid")[1].by_resource_server["auth.globus.org"]["access_token"]
    status, body, _ = raw(emulator, "POST", "/v2/api/clients", new, plain)
    assert status == 403 and "manage_projects" in body["error_description"]
    allowed = login("openid urn:globus:auth:scope:auth.globus.org:manage_projects")[1]
    status, body, _ = raw(emulator, "POST", "/v2/api/clients", new,
                          allowed.by_resource_server["auth.globus.org"]["access_token"])
    assert status == 200 and body["included"]["client_credential"]["secret"]
    # an instance of a native app, from its template: asked for without credentials
    instance = json.dumps({"client": {"template_id": str(uuid.uuid4()), "name": "i"}}).encode()
    status, body, _ = raw(emulator, "POST", "/v2/api/clients", instance)
    assert status == 200 and body["included"]["client_credential"]["secret"]


def test_revoking_a_token_needs_the_client_to_say_who_it_is(emulator, token):
    status, body, _ = raw(emulator, "POST", "/v2/oauth2/token/revoke",
                          f"token={token}".encode())
    assert status == 401 and body["error"] == "invalid_client"
    assert raw(emulator, "GET", "/v0.10/submission_id", token=token)[0] == 200  # still live
    status, _ = _basic(emulator, "/v2/oauth2/token/revoke", {"token": token},
                       str(uuid.uuid4()), "a guessed secret")
    assert status == 401
    client = "d7382f5a-4ea3-4b69-b094-99c392fc820d"  # the native app it was issued to
    assert raw(emulator, "POST", "/v2/oauth2/token/revoke",
               f"token={token}&client_id={client}".encode())[0] == 200
    assert raw(emulator, "GET", "/v0.10/submission_id", token=token)[0] == 401


def test_event_list_and_ls_filters(emulator, transfer_client):
    collection = str(uuid.uuid4())
    root = emulator.collection_path(collection)
    for name, size in (("a.txt", 1), ("b.log", 10), ("c.txt", 100)):
        (root / name).write_text("x" * size)
    (root / "sub").mkdir()
    names = [e["name"] for e in transfer_client.operation_ls(
        collection, path="/", filter="name:~*.txt", orderby="size DESC")]
    assert names == ["c.txt", "a.txt"]
    assert [e["name"] for e in transfer_client.operation_ls(collection, path="/",
                                                            filter="type:dir")] == ["sub"]
    assert [e["name"] for e in transfer_client.operation_ls(collection, path="/",
                                                            filter="type:file/size:>=10")] == [
        "b.log", "c.txt"]
    data = globus_sdk.TransferData(collection, collection,
                                   deadline="2100-01-01T00:00:00+00:00")
    data.add_item("/missing", "/~/m")
    task = transfer_client.submit_transfer(data)["task_id"]

    def events(flag: str) -> list[dict]:  # globus-cli's `task event-list --filter-errors`
        return transfer_client.get(f"/v0.10/task/{task}/event_list",
                                   query_params={"filter": f"is_error:{flag}"})["DATA"]
    errors = wait_for(lambda: events("1"))
    assert all(e["is_error"] for e in errors)
    assert not any(e["is_error"] for e in events("0"))
    transfer_client.cancel_task(task)


def test_missing_or_bogus_token_is_a_401(emulator):
    assert raw(emulator, "GET", "/v0.10/submission_id")[0] == 401
    assert raw(emulator, "GET", "/v0.10/submission_id", token="bogus")[0] == 401


def test_server_survives_bad_input(emulator, token):
    for body in (b"[1,2]", b"\xff\xfe", b'{"DATA_TYPE": "transfer", "DATA": "x"}'):
        assert raw(emulator, "POST", "/v0.10/transfer", body, token)[0] == 400
    assert raw(emulator, "POST", "/v2/oauth2/token", b"grant_type=nonsense")[0] == 401
    assert raw(emulator, "GET", "/v0.10/submission_id", token=token)[0] == 200


def test_64_clients_at_once_lose_nothing(emulator, token):
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    for index in range(64):
        (emulator.collection_path(source) / f"{index}.dat").write_bytes(os.urandom(1024))
    barrier = threading.Barrier(64)
    task_ids: list[str] = []
    errors: list[BaseException] = []

    def submit(index: int) -> None:
        try:
            client = globus_sdk.TransferClient(
                authorizer=globus_sdk.AccessTokenAuthorizer(token))
            data = globus_sdk.TransferData(source, destination)
            data.add_item(f"/{index}.dat", f"/~/{index}.dat")
            barrier.wait()
            task_ids.append(client.submit_transfer(data)["task_id"])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    client = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(token))
    assert all(wait_task(client, t)["status"] == "SUCCEEDED" for t in task_ids)
    assert len(set(task_ids)) == 64
    assert len(list(client.paginated.task_list().items())) == 64
    stats = raw(emulator, "GET", "/_emulator/stats")[1]
    assert stats["requests"]["POST /v0.10/transfer"] == 64
    for index in range(64):
        assert (emulator.collection_path(destination) / f"{index}.dat").read_bytes() == \
            (emulator.collection_path(source) / f"{index}.dat").read_bytes()


def test_cli_prints_exports_then_saves_state_on_sigterm(tmp_path):
    root = tmp_path / "g"
    process = subprocess.Popen(
        [sys.executable, "-m", "pegasus_globus.emulator.cli", "--root", str(root), "--port", "0",
         "--consent-required", str(uuid.uuid4())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        exports = [process.stdout.readline().strip() for _ in range(3)]
        names = [line.split("=")[0] for line in exports]
        services = ("AUTH", "TRANSFER", "TIMER")
        assert names == [f"export GLOBUS_SDK_SERVICE_URL_{s}" for s in services]
        url = exports[0].split("=", 1)[1]
        with urllib.request.urlopen(url + "_emulator/clock", timeout=10) as answer:
            assert json.load(answer)["time_scale"] == 1.0
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    saved = json.loads((root / "state.json").read_text())
    assert len(saved["collections"]) == 1
    assert (root / "state.json").stat().st_mode & 0o777 == 0o600


def test_cli_rejects_a_bad_fault_rate(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pegasus_globus.emulator.cli", "--root", str(tmp_path),
         "--fault-rate", "2"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "fault rate must be between 0 and 1" in result.stderr


def test_a_collection_mapped_to_a_directory_serves_it_and_nothing_outside(
        emulator, transfer_client, tmp_path):
    """In-process and through the admin route: the collection's / is the directory."""
    scratch, other = tmp_path / "scratch", tmp_path / "other"
    scratch.mkdir()
    other.mkdir()
    (scratch / "in.txt").write_text("in")
    (tmp_path / "beside.txt").write_text("secret")
    mapped, routed = str(uuid.uuid4()), str(uuid.uuid4())
    emulator.map_collection(mapped, scratch)
    assert admin(emulator, "POST", f"/_emulator/collections/{routed}",
                 {"root": str(other)})["root"] == str(other)
    listing = transfer_client.operation_ls(mapped, path="/")
    assert [entry["name"] for entry in listing] == ["in.txt"]
    data = globus_sdk.TransferData(mapped, routed)
    data.add_item("/in.txt", "/copied/in.txt")
    assert wait_task(transfer_client, transfer_client.submit_transfer(data)["task_id"])[
        "status"] == "SUCCEEDED"
    assert (other / "copied" / "in.txt").read_text() == "in"
    with pytest.raises(globus_sdk.TransferAPIError) as refused:
        transfer_client.operation_stat(mapped, path="/../beside.txt")
    assert refused.value.http_status == 403


def test_a_fresh_collection_has_a_root(transfer_client):
    assert list(transfer_client.operation_ls(str(uuid.uuid4()), path="/")) == []


def test_cli_serves_a_collection_from_a_directory(tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    collection = str(uuid.uuid4())
    process = subprocess.Popen(
        [sys.executable, "-m", "pegasus_globus.emulator.cli", "--root", str(tmp_path / "g"),
         "--collection", f"{collection}={scratch}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip().split("=", 1)[1]
        with urllib.request.urlopen(url + "_emulator/collections", timeout=10) as answer:
            assert json.load(answer)[collection]["root"] == str(scratch)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize("mapping,message", [("nope", "give UUID=DIR"),
                                             (f"{uuid.uuid4()}=/no/such/dir", "not a directory"),
                                             ("x=/tmp", "not a UUID")])
def test_cli_rejects_a_bad_collection_mapping(tmp_path, mapping, message):
    result = subprocess.run(
        [sys.executable, "-m", "pegasus_globus.emulator.cli", "--root", str(tmp_path),
         "--collection", mapping], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_readmes_emulator_recipe_works_as_written(tmp_path):
    """The README's recipe, run by bash exactly as written (with /tmp/g moved under tmp_path)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    recipe = readme.split("source it once it is there:\n\n```sh\n", 1)[1].split("```", 1)[0]
    root = str(tmp_path / "g")
    lines = [line for line in recipe.replace("/tmp/g", root).splitlines()
             if "pegasus-globus-online-init" not in line]  # a login is tested elsewhere
    ask = (f'{sys.executable} -c "import os, urllib.request; urllib.request.urlopen('
           f"os.environ['GLOBUS_SDK_SERVICE_URL_TRANSFER'] + '_emulator/clock')\" && "
           'echo "answered at $GLOBUS_SDK_SERVICE_URL_TRANSFER"')
    script = "\n".join([*lines[:3], ask, *lines[3:], "wait"])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert "answered at http://127.0.0.1:" in result.stdout
    assert not os.path.exists(os.path.join(root, "env"))  # removed when it stopped
    assert os.path.exists(os.path.join(root, "state.json"))


def test_a_path_too_long_is_a_400_that_names_no_local_path(emulator, transfer_client):
    collection = str(uuid.uuid4())
    emulator.collection_path(collection)
    with pytest.raises(globus_sdk.TransferAPIError) as caught:
        transfer_client.operation_ls(collection, path="/" + "x" * 5000)
    assert caught.value.http_status == 400
    assert str(emulator.root) not in caught.value.text


def test_deeply_nested_json_is_a_400(emulator, transfer_client):
    header = transfer_client.authorizer.get_authorization_header()
    request = urllib.request.Request(emulator.url + "v0.10/transfer", method="POST",
                                     data=b"[" * 100000 + b"]" * 100000,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": header})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400  # not a 500 RecursionError


def test_the_emulators_modules_never_import_one_another_in_a_circle():
    """Each module of the emulator, with its type-checking imports, depends only on modules
    below it: a service reads in one sitting, without chasing one that reads it back."""
    import ast

    root = Path(__file__).resolve().parent.parent / "pegasus_globus" / "emulator"

    def name_of(path: Path) -> str:
        parts = path.relative_to(root).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name_of(path): path for path in root.rglob("*.py")}
    imports: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                target = ".".join(p for p in [*base, node.module or ""] if p)
                for alias in node.names:
                    full = f"{target}.{alias.name}".lstrip(".")
                    found.add(full if full in modules else target)
        imports[name] = {m for m in found if m in modules and m != name}

    def circle_from(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name):], name]
        for imported in sorted(imports[name]):
            circle = circle_from(imported, [*path, name])
            if circle:
                return circle
        return None

    circles = [c for c in (circle_from(name, []) for name in sorted(imports)) if c]
    assert not circles, " -> ".join(circles[0])


def test_a_costly_state_write_spaces_the_next_ones_out(tmp_path):
    """Writing the state serialises all of it under the lock: with a task of 100,000 items
    each write takes about a second, and writing every 0.2 s made the task's run quadratic."""
    from pegasus_globus.emulator.state import StateStore

    store = StateStore(tmp_path)
    try:
        assert store.next_wait() == 0.2
        store["tasks"]["big"] = {"items": list(range(100_000))}
        store.mark_dirty()
        store.flush()
        assert store.next_wait() == max(0.2, 10 * store._last_flush) > 0
        store._last_flush = 1.5  # as a write of a big state takes
        assert store.next_wait() == 15.0
    finally:
        store.close()


def test_a_finished_tasks_text_is_made_once_not_at_every_write(emulator, transfer_client,
                                                                monkeypatch):
    """A write serialised every task ever run, under the lock: ten finished 1,000-file tasks
    made each write hold it 40 ms, which a running task and every request waited for. Once
    its worker is gone a finished task is sealed, and writes reuse its text; the file still
    holds exactly the state, and an entry put in a sealed one's place is written as it is."""
    from pegasus_globus.emulator import state as state_module

    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    (emulator.collection_path(source) / "f").write_text("f")
    data = globus_sdk.TransferData(source, destination)
    data.add_item("/f", "/~/f")
    task_id = transfer_client.submit_transfer(data)["task_id"]
    assert wait_task(transfer_client, task_id)["status"] == "SUCCEEDED"
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == f"task-{task_id[:8]}"])
    store = emulator.state
    task = store["tasks"][task_id]
    serialised: list[Any] = []
    real_json = state_module._json
    monkeypatch.setattr(state_module, "_json",
                        lambda value: serialised.append(value) or real_json(value))
    store.mark_dirty()
    store.flush()
    # neither the task nor anything holding it was serialised again
    holders = (task, store["tasks"], store.data)
    assert serialised and not [v for v in serialised if any(v is h for h in holders)]
    assert json.loads(store.path.read_text()) == json.loads(json.dumps(store.data))
    store["tasks"][task_id] = {"doc": {**task["doc"], "label": "replaced"}}
    store.mark_dirty()
    store.flush()
    assert json.loads(store.path.read_text())["tasks"][task_id]["doc"]["label"] == "replaced"


def test_closing_stops_every_task_worker_and_leaves_the_task_to_resume(tmp_path, monkeypatch):
    """A task retrying a missing source kept writing after close: removing the emulator's
    directory then failed with 'Directory not empty' (bench.register_timers)."""
    from pegasus_globus.emulator import Emulator

    emulator = Emulator(tmp_path / "globus").start()
    for name, value in emulator.environment.items():
        monkeypatch.setenv(name, value)
    client = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(
        login(TRANSFER)[1].by_resource_server["transfer.api.globus.org"]["access_token"]))
    data = globus_sdk.TransferData(str(uuid.uuid4()), str(uuid.uuid4()))
    data.add_item("/missing.txt", "/~/missing.txt")
    task_id = client.submit_transfer(data)["task_id"]
    wait_for(lambda: client.get_task(task_id)["nice_status"] == "FILE_NOT_FOUND")
    emulator.close()
    assert not [t for t in threading.enumerate() if t.name == f"task-{task_id[:8]}"]
    saved = json.loads((tmp_path / "globus" / "state.json").read_text())
    assert saved["tasks"][task_id]["doc"]["status"] == "ACTIVE"  # for a restart to resume
    shutil.rmtree(tmp_path / "globus")


def test_closing_waits_for_the_requests_being_answered(tmp_path, monkeypatch):
    """Their threads are daemons, which nothing waits for: a request still being answered
    when the emulator closed wrote in its collections after close() returned (Ctrl-C on
    bench.scaling: removing the emulator's directory failed with 'Directory not empty').
    A kept-alive connection's next request, after, is refused (503)."""
    import contextlib

    from pegasus_globus.emulator import Emulator

    emulator = Emulator(tmp_path / "globus").start()
    entered, release, order = threading.Event(), threading.Event(), []
    answer = emulator._dispatch

    def slow(request):  # a request that writes in the collections, and takes its time
        entered.set()
        release.wait(30)
        (emulator.root / "collections" / "late").mkdir()
        order.append("written")
        return answer(request)
    monkeypatch.setattr(emulator, "_dispatch", slow)

    def ask() -> None:
        with contextlib.suppress(OSError):
            admin(emulator, "GET", "_emulator/stats")
    asking = threading.Thread(target=ask)
    asking.start()
    assert entered.wait(30)
    closing = threading.Thread(target=lambda: (emulator.close(), order.append("closed")))
    closing.start()
    closing.join(2)  # before: closed at once, while the request still had its write to do
    release.set()
    closing.join(30)
    asking.join(30)
    assert order == ["written", "closed"]
    from pegasus_globus.emulator.web import Request

    refused, _ = emulator.dispatch(Request(method="GET", path="/v0.10/task_list", query={},
                                           headers={}, body=b"", stream=None))
    assert refused.status == 503
    shutil.rmtree(tmp_path / "globus")


def test_tls_and_plain_http_share_the_port_and_a_refused_certificate_is_quiet(emulator,
                                                                              monkeypatch):
    """A connection opening with a TLS handshake is answered over TLS with the root's
    certificate; a client that refuses it only gets its own error: the emulator prints no
    traceback for it (socketserver's default) and goes on serving plain HTTP on that port."""
    import socketserver
    import ssl

    from pegasus_globus.emulator.server import _Server

    printed: list[BaseException | None] = []
    handled: list[BaseException | None] = []
    monkeypatch.setattr(socketserver.BaseServer, "handle_error",
                        lambda server, request, address: printed.append(sys.exc_info()[1]))
    quiet = _Server.handle_error

    def spy(server: Any, request: Any, address: Any) -> None:
        quiet(server, request, address)
        handled.append(sys.exc_info()[1])

    monkeypatch.setattr(_Server, "handle_error", spy)
    clock = emulator.url.replace("http://", "https://") + "_emulator/clock"
    trusting = ssl.create_default_context(cafile=str(emulator.certificate))
    with urllib.request.urlopen(clock, context=trusting, timeout=10) as answer:
        assert "time_scale" in json.load(answer)
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(clock, context=ssl.create_default_context(), timeout=10)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    wait_for(lambda: handled, timeout=10)  # the server saw the handshake fail
    assert isinstance(handled[0], ssl.SSLError) and printed == []
    assert raw(emulator, "GET", "/_emulator/clock")[0] == 200


def test_the_certificate_is_made_once_per_root(tmp_path):
    from pegasus_globus.emulator import Emulator

    with Emulator(tmp_path / "g") as first:
        made = first.certificate.read_bytes()
    with Emulator(tmp_path / "g") as second:
        assert second.certificate.read_bytes() == made
        assert oct(second.certificate.with_name("key.pem").stat().st_mode & 0o777) == "0o600"
