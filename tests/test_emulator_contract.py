"""The emulator answers with at least the keys and value types of globus-sdk's canned responses.

``globus_sdk.testing`` holds responses recorded from the real services. Each case below
makes the emulator produce the same kind of answer through real globus-sdk calls, then
compares shapes: every canned key must be present with a value of the same JSON type
(a canned ``null`` accepts any type), recursively, lists by their first element.
"""

from __future__ import annotations

import importlib
import uuid
from typing import Any, Callable

import globus_sdk
import pytest

from .conftest import TRANSFER, admin, deny_as_mode_000, login, wait_for, wait_task


def canned(module: str, case: str = "default") -> tuple[int, Any]:
    response = importlib.import_module(f"globus_sdk.testing.data.{module}").RESPONSES.lookup(case)
    return response.status, response.json


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


# Fields that are null in other canned responses or in the services' documentation, so a
# null here is a state (a finished task, a timer with no run left), not a shape difference.
NULLABLE = {"nice_status", "nice_status_short_description", "sync_level", "next_run",
            "expire_time", "subject", "completion_time", "last_ran_at"}


# Keys whose values the services fix (a document's type, an error's code): compared as values.
VALUES = {"DATA_TYPE", "code", "timer_type", "token_type", "callback_url"}


def shape_errors(expected: Any, actual: Any, where: str = "$", values: bool = True) -> list[str]:
    """Shape differences, and differing values for the keys in VALUES when ``values``."""
    key = where.rsplit(".", 1)[-1]
    if values and key in VALUES and expected is not None and expected != actual:
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    if expected is None or (actual is None and where.rsplit(".", 1)[-1] in NULLABLE):
        return []
    if json_type(expected) != json_type(actual):
        return [f"{where}: expected {json_type(expected)}, got {json_type(actual)} ({actual!r})"]
    if isinstance(expected, dict):
        problems = [f"{where}.{key}: missing" for key in expected if key not in actual]
        for key in expected:
            if key in actual:
                problems += shape_errors(expected[key], actual[key], f"{where}.{key}", values)
        return problems
    if isinstance(expected, list) and expected and actual:
        return shape_errors(expected[0], actual[0], f"{where}[0]", values)
    return []


def answer(call: Callable[[], Any]) -> tuple[int, Any]:
    """Status and body of an SDK call, whether it succeeded or raised an API error."""
    try:
        response = call()
    except globus_sdk.GlobusAPIError as error:
        return error.http_status, error.raw_json
    return response.http_status, response.data


@pytest.fixture
def world(emulator, transfer_client, timers_client) -> dict[str, Any]:
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    (emulator.collection_path(source) / "file1.txt").write_text("data")
    emulator.collection_path(destination)
    return {"emulator": emulator, "tc": transfer_client, "timers": timers_client,
            "src": source, "dst": destination}


def transfer_data(w: dict[str, Any]) -> globus_sdk.TransferData:
    data = globus_sdk.TransferData(w["src"], w["dst"], label="contract")
    data.add_item("/file1.txt", "/~/file1.txt")
    return data


def delete_data(w: dict[str, Any]) -> globus_sdk.DeleteData:
    data = globus_sdk.DeleteData(w["src"])
    data.add_item("/file1.txt")
    return data


def a_timer(w: dict[str, Any]) -> str:
    """A timer that has run once and is scheduled to run again (an hour later, emulated)."""
    timer = globus_sdk.TransferTimer(
        name="contract", body=transfer_data(w),
        schedule=globus_sdk.RecurringTimerSchedule(
            3600, end={"condition": "iterations", "count": 2}))
    job_id = w["timers"].create_timer(timer)["timer"]["job_id"]
    wait_for(lambda: w["timers"].get_job(job_id)["number_of_runs"] == 1)
    return job_id


def legacy_job(w: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A ``POST /jobs/`` body as the Globus Timer CLI's ``job transfer`` sends it."""
    return {"name": "legacy", "start": "2030-01-01T00:00:00+00:00", "interval": 864000,
            "callback_url": "https://actions.automate.globus.org/transfer/transfer/run",
            "callback_body": {"body": {
                "label": "legacy", "source_endpoint_id": w["src"],
                "destination_endpoint_id": w["dst"], "transfer_items": [
                    {"source_path": "/file1.txt", "destination_path": "/~/f",
                     "recursive": False}]}}, **fields}


def auth_api_client() -> globus_sdk.AuthClient:
    token = login("openid profile email urn:globus:auth:scope:auth.globus.org:view_identity_set"
                  )[1].by_resource_server["auth.globus.org"]["access_token"]
    return globus_sdk.AuthClient(authorizer=globus_sdk.AccessTokenAuthorizer(token))


def code_exchange_with_a_wrong_code() -> Any:
    client = auth_client()
    client.oauth2_start_flow(requested_scopes=TRANSFER)
    return client.oauth2_exchange_code_for_tokens("wrong")


def auth_client() -> globus_sdk.NativeAppAuthClient:
    return globus_sdk.NativeAppAuthClient("d7382f5a-4ea3-4b69-b094-99c392fc820d")


CASES: dict[tuple[str, str], Callable[[dict[str, Any]], tuple[int, Any]]] = {
    ("auth.oauth2_exchange_code_for_tokens", "default"):
        lambda w: answer(lambda: login(TRANSFER)[1]),
    ("auth.oauth2_exchange_code_for_tokens", "invalid_grant"):
        lambda w: answer(code_exchange_with_a_wrong_code),
    ("auth.oauth2_client_credentials_tokens", "default"):
        lambda w: answer(lambda: globus_sdk.ConfidentialAppAuthClient(
            *w["emulator"].register_client()).oauth2_client_credentials_tokens(TRANSFER)),
    ("auth.oauth2_revoke_token", "default"):
        lambda w: answer(lambda: auth_client().oauth2_revoke_token("any-token")),
    ("auth.oauth2_token_introspect", "default"):
        lambda w: answer(lambda: globus_sdk.ConfidentialAppAuthClient(
            *w["emulator"].register_client()).oauth2_token_introspect(
            login(TRANSFER)[1].by_resource_server["transfer.api.globus.org"]["access_token"])),
    ("auth.userinfo", "unauthorized"):
        lambda w: answer(lambda: globus_sdk.AuthClient(
            authorizer=globus_sdk.AccessTokenAuthorizer("not-a-token")).userinfo()),
    ("transfer.get_submission_id", "default"): lambda w: answer(w["tc"].get_submission_id),
    ("transfer.submit_transfer", "default"):
        lambda w: answer(lambda: w["tc"].submit_transfer(transfer_data(w))),
    ("transfer.submit_transfer", "failure"):
        lambda w: answer(lambda: w["tc"].submit_transfer(globus_sdk.TransferData(w["src"],
                                                                                  w["dst"]))),
    ("transfer.submit_delete", "default"):
        lambda w: answer(lambda: w["tc"].submit_delete(
            delete_data(w))),
    ("transfer.task_list", "default"):
        lambda w: (wait_task(w["tc"], w["tc"].submit_transfer(transfer_data(w))["task_id"]),
                   answer(w["tc"].task_list))[1],
    ("transfer.cancel_task", "default"):  # a task still running: its destination is inactive
        lambda w: (w["emulator"].mark_collection(w["dst"], inactive=True),
                   answer(lambda: w["tc"].cancel_task(
                       w["tc"].submit_transfer(transfer_data(w))["task_id"])))[1],
    ("transfer.get_endpoint", "default"): lambda w: answer(lambda: w["tc"].get_endpoint(w["src"])),
    ("transfer.operation_mkdir", "default"):
        lambda w: answer(lambda: w["tc"].operation_mkdir(w["dst"], "/~/new")),
    ("transfer.operation_rename", "default"):
        lambda w: answer(lambda: w["tc"].operation_rename(w["src"], "/file1.txt", "/renamed")),
    ("transfer.operation_stat", "default"):
        lambda w: answer(lambda: w["tc"].operation_stat(w["src"], "/file1.txt")),
    ("transfer.operation_stat", "not_found"):
        lambda w: answer(lambda: w["tc"].operation_stat(w["src"], "/nothing")),
    ("transfer.operation_stat", "permission_denied"):
        lambda w: (admin(w["emulator"], "POST", f"_emulator/collections/{w['src']}",
                         {"permission_denied": True}),
                   answer(lambda: w["tc"].operation_stat(w["src"], "/file1.txt")))[1],
    ("timer.create_timer", "default"):
        lambda w: answer(lambda: w["timers"].create_timer(globus_sdk.TransferTimer(
            name="contract", body=transfer_data(w), schedule=globus_sdk.RecurringTimerSchedule(
                604800, end={"condition": "iterations", "count": 2})))),
    ("timer.list_jobs", "default"): lambda w: (a_timer(w), answer(w["timers"].list_jobs))[1],
    ("timer.create_job", "default"):
        lambda w: answer(lambda: w["timers"].create_job(legacy_job(w))),
    ("timer.create_job", "validation_error"):
        lambda w: answer(lambda: w["timers"].create_job(legacy_job(w, start=None,
                                                                   callback_url=None))),
    ("auth.get_identities", "default"):
        lambda w: answer(lambda: auth_api_client().get_identities(
            usernames="user@example.org")),
    ("auth.get_consents", "default"):
        lambda w: answer(lambda: (client := auth_api_client()).get_consents(
            client.userinfo()["sub"])),
    ("timer.get_job", "default"): lambda w: answer(lambda: w["timers"].get_job(a_timer(w))),
    ("timer.get_job", "inactive_user"):
        lambda w: answer(lambda: w["timers"].get_job(
            (job := a_timer(w), w["timers"].pause_job(job))[0])),
    ("timer.get_job", "simple_500_error"):
        lambda w: answer(lambda: w["timers"].get_job(str(uuid.uuid4()))),
    ("timer.update_job", "default"):
        lambda w: answer(lambda: w["timers"].update_job(a_timer(w), {"name": "renamed"})),
    ("timer.delete_job", "default"): lambda w: answer(lambda: w["timers"].delete_job(a_timer(w))),
    ("timer.pause_job", "default"): lambda w: answer(lambda: w["timers"].pause_job(a_timer(w))),
    ("timer.resume_job", "default"):
        lambda w: answer(lambda: w["timers"].resume_job(
            (job := a_timer(w), w["timers"].pause_job(job))[0])),
}


@pytest.mark.parametrize("module,case", sorted(CASES), ids=lambda v: v)
def test_emulator_matches_canned_response(world, module: str, case: str) -> None:
    expected_status, expected = canned(module, case)
    status, body = CASES[module, case](world)
    # a canned server error has no counterpart here: its shape is compared, not its values
    problems = shape_errors(expected, body, values=expected_status < 500)
    assert not problems, "\n".join(problems)
    # the same status where the recording fixes one (200 is the canned default, so a success
    # is then any 2xx: Transfer answers 202 to a submission), never for canned server errors
    if expected_status < 500 and expected_status != 200:
        assert status == expected_status, body
    elif expected_status == 200:
        assert 200 <= status < 300, body


def test_every_served_route_with_a_canned_response_is_covered(emulator) -> None:
    """A route added to the emulator must join CASES when globus-sdk has canned data for it."""
    served = {route.key for route in emulator.routes if not route.template.startswith("/_")}
    covered = {module for module, _ in CASES}
    templates = {
        "auth.oauth2_exchange_code_for_tokens": "POST /v2/oauth2/token",
        "auth.oauth2_revoke_token": "POST /v2/oauth2/token/revoke",
        "auth.oauth2_token_introspect": "POST /v2/oauth2/token/introspect",
        "auth.userinfo": "GET /v2/oauth2/userinfo",
        "transfer.get_submission_id": "GET /v0.10/submission_id",
        "transfer.submit_transfer": "POST /v0.10/transfer",
        "transfer.submit_delete": "POST /v0.10/delete",
        "transfer.task_list": "GET /v0.10/task_list",
        "transfer.cancel_task": "POST /v0.10/task/{task_id}/cancel",
        "transfer.get_endpoint": "GET /v0.10/endpoint/{endpoint_id}",
        "transfer.operation_mkdir": "POST /v0.10/operation/endpoint/{endpoint_id}/mkdir",
        "transfer.operation_stat": "GET /v0.10/operation/endpoint/{endpoint_id}/stat",
        "transfer.operation_rename": "POST /v0.10/operation/endpoint/{endpoint_id}/rename",
        "timer.create_timer": "POST /v2/timer",
        "timer.create_job": "POST /jobs/",
        "auth.get_identities": "GET /v2/api/identities",
        "auth.get_consents": "GET /v2/api/identities/{identity_id}/consents",
        "timer.list_jobs": "GET /jobs/",
        "timer.get_job": "GET /jobs/{job_id}",
        "timer.update_job": "PATCH /jobs/{job_id}",
        "timer.delete_job": "DELETE /jobs/{job_id}",
        "timer.pause_job": "POST /jobs/{job_id}/pause",
        "timer.resume_job": "POST /jobs/{job_id}/resume",
    }
    for module, route in templates.items():
        importlib.import_module(f"globus_sdk.testing.data.{module}")  # canned data exists
        assert route in served, route
        assert module in covered, module


def test_a_path_the_storage_denies_is_answered_as_globus_denies_it(world, monkeypatch) -> None:
    """A directory the collection's storage will not let the service read or write (POSIX
    permissions, see deny_as_mode_000). Seen: 500
    InternalError, which globus-sdk retries for seconds before any caller hears of it; Globus
    answers 403 EndpointPermissionDenied (the canned ``permission_denied``), not retried."""
    private = world["emulator"].collection_path(world["src"]) / "private"
    private.mkdir()
    (private / "f").write_text("data")
    deny_as_mode_000(monkeypatch, private)
    admin(world["emulator"], "DELETE", "_emulator/stats")
    expected_status, expected = canned("transfer.operation_stat", "permission_denied")
    for call in (lambda: world["tc"].operation_ls(world["src"], path="/private/"),
                 lambda: world["tc"].operation_stat(world["src"], "/private/f"),
                 lambda: world["tc"].operation_mkdir(world["src"], "/private/new")):
        status, body = answer(call)
        assert (status, shape_errors(expected, body)) == (expected_status, []), body
        assert "/tmp" not in body["message"]  # never the service's local paths
    assert admin(world["emulator"], "GET", "_emulator/stats")["total"] == 3  # none retried
