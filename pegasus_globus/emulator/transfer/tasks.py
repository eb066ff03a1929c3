"""Transfer tasks as the API shows them: submitting transfers and deletes (once per
submission id), listing and reading tasks and their events, cancelling and updating them.
:class:`~.worker.TaskWorker` runs them."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from ..auth import TRANSFER_RS
from ..clock import iso
from ..errors import ApiError
from ..paths import collection_id
from ..web import Request, Response, Route
from .common import page, require_consent
from .worker import TERMINAL, TaskWorker, add_event, deadline_epoch

if TYPE_CHECKING:
    from ..host import Host

SYNC_LEVELS = {"exists": 0, "size": 1, "mtime": 2, "checksum": 3}
DEADLINE_SECONDS = 24 * 3600


def _filter_rules(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A transfer's ``filter_rules``, checked: ``method`` include|exclude, ``name`` a
    pattern, ``type`` file|dir or absent (both)."""
    rules = body.get("filter_rules")
    if rules is None:
        return None
    if not isinstance(rules, list) or not all(
            isinstance(r, dict) and r.get("method") in ("include", "exclude")
            and isinstance(r.get("name"), str) and r.get("type") in (None, "file", "dir")
            for r in rules):
        raise ApiError(400, "ClientError.BadRequest.InvalidFilterRule",
                       "filter_rules: each needs method include|exclude, a name pattern and "
                       "type file, dir or none")
    return [{"DATA_TYPE": "filter_rule", **r} for r in rules]


def _matches(value: Any, condition: str) -> bool:
    """One ``filter`` clause of task_list: ``~text`` (label contains), ``A,B`` (one of),
    ``after,before`` for times (either may be empty)."""
    if condition.startswith("~"):
        return condition[1:].lower() in str(value or "").lower()
    if value is not None and str(value)[:4].isdigit() and "T" in str(value) and "," in condition:
        after, _, before = condition.partition(",")  # ISO times compare as text, same zone
        moment = str(value).replace("T", " ")[:19]
        return ((not after or moment >= after.replace("T", " ")[:19])
                and (not before or moment < before.replace("T", " ")[:19]))
    return str(value) in condition.split(",")


class TaskService:
    """Tasks for their owners only: another identity's task does not exist for a token."""

    def __init__(self, emulator: Host, worker: TaskWorker) -> None:
        self.emulator = emulator
        self.state = emulator.state
        self.worker = worker

    def routes(self) -> list[Route]:
        v = "/v0.10"
        return [
            Route("GET", f"{v}/submission_id", self.submission_id),
            Route("POST", f"{v}/transfer", self.submit_transfer),
            Route("POST", f"{v}/delete", self.submit_delete),
            Route("GET", f"{v}/task_list", self.task_list),
            Route("GET", f"{v}/task/{{task_id}}", self.get_task),
            Route("GET", f"{v}/task/{{task_id}}/event_list", self.event_list),
            Route("POST", f"{v}/task/{{task_id}}/cancel", self.cancel_task),
            Route("PUT", f"{v}/task/{{task_id}}", self.update_task),
            Route("GET", f"{v}/task/{{task_id}}/successful_transfers", self.successful_transfers),
            Route("GET", f"{v}/task/{{task_id}}/skipped_errors", self.skipped_errors),
            Route("GET", f"{v}/task/{{task_id}}/pause_info", self.pause_info),
        ]

    # -- submitting --------------------------------------------------------------------------

    def submission_id(self, request: Request) -> Response:
        self.emulator.auth.check(request, TRANSFER_RS)
        return Response(200, {"DATA_TYPE": "submission_id", "value": str(uuid.uuid4())})

    def submit_transfer(self, request: Request) -> Response:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        body = request.json()
        if body.get("DATA_TYPE") != "transfer":
            raise ApiError(400, "ClientError.BadRequest", "DATA_TYPE must be 'transfer'")
        source = collection_id(str(body.get("source_endpoint")))
        destination = collection_id(str(body.get("destination_endpoint")))
        items = self._items(body, "transfer_item", ("source_path", "destination_path"))
        for item in items:
            self.emulator.resolve(source, item["source_path"])
            self.emulator.resolve(destination, item["destination_path"])
        require_consent(self.emulator, [source, destination], token)
        return self._accept(request, body, "TRANSFER", source, destination, token["sub"])

    def submit_delete(self, request: Request) -> Response:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        body = request.json()
        if body.get("DATA_TYPE") != "delete":
            raise ApiError(400, "ClientError.BadRequest", "DATA_TYPE must be 'delete'")
        endpoint = collection_id(str(body.get("endpoint")))
        for item in self._items(body, "delete_item", ("path",)):
            self.emulator.resolve(endpoint, item["path"])
        require_consent(self.emulator, [endpoint], token)
        return self._accept(request, body, "DELETE", endpoint, None, token["sub"])

    @staticmethod
    def _items(body: dict[str, Any], data_type: str, fields: tuple[str, ...]) -> list[dict]:
        items = body.get("DATA")
        if isinstance(items, list) and not items and data_type == "transfer_item":
            raise ApiError(400, "ClientError.BadRequest.NoTransferItems",
                           "A transfer requires at least one item")
        if not isinstance(items, list) or not items:
            raise ApiError(400, "ClientError.BadRequest", "DATA must be a non-empty list")
        for item in items:
            if not isinstance(item, dict) or item.get("DATA_TYPE", data_type) != data_type:
                raise ApiError(400, "ClientError.BadRequest", f"DATA items must be {data_type}")
            for name in fields:
                if not isinstance(item.get(name), str):
                    raise ApiError(400, "ClientError.BadRequest", f"{data_type} needs '{name}'")
        return items

    def _accept(self, request: Request, body: dict[str, Any], kind: str, source: str,
                destination: str | None, owner: str) -> Response:
        submission = body.get("submission_id")
        if not isinstance(submission, str) or not submission:
            raise ApiError(400, "ClientError.BadRequest", "submission_id is required")
        if body.get("deadline") is not None:
            deadline_epoch(body["deadline"])
        result_type = "transfer_result" if kind == "TRANSFER" else "delete_result"
        with self.state.lock:
            existing = self.state["submissions"].get(submission)
            task_id = existing or self.create_task(kind, body, source, destination, owner)
            self.state["submissions"][submission] = task_id
            self.state.mark_dirty()
        if existing:
            code = "Duplicate"
            message = f"A {kind.lower()} with id '{submission}' was already submitted"
        else:
            code = "Accepted"
            message = (f"The {kind.lower()} has been accepted and a task has been created and "
                       "queued for execution")
        return Response(202 if not existing else 200, {
            "DATA_TYPE": result_type, "code": code, "message": message,
            "request_id": uuid.uuid4().hex[:9], "resource": request.path,
            "submission_id": submission, "task_id": task_id,
            "task_link": {"DATA_TYPE": "link", "href": f"/v0.10/task/{task_id}?format=json",
                          "rel": "related", "resource": "task", "title": "related task"},
        })

    def create_task(self, kind: str, body: dict[str, Any], source: str,
                    destination: str | None, owner: str) -> str:
        """Record a task for identity ``owner`` and start it. Also used by the Timers service
        for each timer run."""
        task_id = str(uuid.uuid4())
        now = time.time()
        sync_level = body.get("sync_level")
        if isinstance(sync_level, str):
            sync_level = SYNC_LEVELS.get(sync_level)
        doc = {
            "DATA_TYPE": "task", "task_id": task_id, "type": kind, "status": "ACTIVE",
            "label": body.get("label"), "command": "API 0.10", "owner_id": owner,
            "username": "u_emulator",
            "request_time": iso(now), "completion_time": None,
            "deadline": body.get("deadline") or iso(now + DEADLINE_SECONDS),
            "source_endpoint": source, "source_endpoint_id": source,
            "source_endpoint_display_name": f"Emulated collection {source[:8]}",
            "destination_endpoint": destination, "destination_endpoint_id": destination,
            "destination_endpoint_display_name":
                destination and f"Emulated collection {destination[:8]}",
            "sync_level": sync_level,
            "verify_checksum": bool(body.get("verify_checksum", kind == "TRANSFER")),
            "preserve_timestamp": bool(body.get("preserve_timestamp", False)),
            "encrypt_data": bool(body.get("encrypt_data", False)),
            "skip_source_errors": bool(body.get("skip_source_errors", False)),
            "fail_on_quota_errors": bool(body.get("fail_on_quota_errors", False)),
            "delete_destination_extra": bool(body.get("delete_destination_extra", False)),
            "recursive_symlinks": "ignore", "filter_rules": _filter_rules(body),
            "history_deleted": False,
            "is_ok": True, "is_paused": False, "nice_status": "Queued",
            "nice_status_details": None, "nice_status_expires_in": -1,
            "nice_status_short_description": "Queued", "fatal_error": None, "faults": 0,
            "canceled_by_admin": None, "canceled_by_admin_message": None,
            "files": 0, "directories": 0, "symlinks": 0, "files_skipped": 0,
            "files_transferred": 0, "bytes_transferred": 0, "bytes_checksummed": 0,
            "effective_bytes_per_second": 0, "subtasks_total": len(body["DATA"]),
            "subtasks_pending": len(body["DATA"]), "subtasks_succeeded": 0,
            "subtasks_failed": 0, "subtasks_canceled": 0, "subtasks_expired": 0,
            "subtasks_retrying": 0, "subtasks_skipped_errors": 0,
        }
        with self.state.lock:
            self.state["tasks"][task_id] = {"doc": doc, "body": body, "events": []}
            self.state.mark_dirty()
        self.worker.start(task_id)
        return task_id

    # -- reading and changing tasks ---------------------------------------------------------

    def _task(self, task_id: str, token: dict[str, Any] | None = None) -> dict[str, Any]:
        """The task, for its owner only: another identity's task does not exist for a token."""
        task = self.state["tasks"].get(task_id)
        if task is None or (token is not None and task["doc"]["owner_id"] != token["sub"]):
            raise ApiError(404, "TaskNotFound", f"Task {task_id} not found")
        return task

    def get_task(self, request: Request, task_id: str) -> Response:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        with self.state.lock:
            return Response(200, dict(self._task(task_id, token)["doc"]))

    def event_list(self, request: Request, task_id: str) -> Response:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        with self.state.lock:
            events = list(reversed(self._task(task_id, token)["events"]))
        for clause in (request.arg("filter") or "").split("/"):  # e.g. is_error:1
            key, _, value = clause.partition(":")
            if key == "is_error" and value:
                events = [e for e in events if e["is_error"] == (value in ("1", "true"))]
            elif key == "code" and value:
                events = [e for e in events if e["code"] in value.split(",")]
        return Response(200, page("event_list", events, request))

    def task_list(self, request: Request) -> Response:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        with self.state.lock:
            docs = [dict(t["doc"]) for t in self.state["tasks"].values()
                    if t["doc"]["owner_id"] == token["sub"]]
        for clause in (request.arg("filter") or "").split("/"):
            key, _, values = clause.partition(":")
            if key and values:
                docs = [d for d in docs if _matches(d.get(key), values)]
        docs.sort(key=lambda d: d["request_time"], reverse=True)
        return Response(200, page("task_list", docs, request))

    def cancel_task(self, request: Request, task_id: str) -> Response:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        with self.state.lock:
            task = self._task(task_id, token)
            doc = task["doc"]
            if doc["status"] in TERMINAL:
                code = "TaskComplete"
                message = "The task completed before the cancel request was processed"
            else:
                self.worker.cancel(task_id)
                add_event(task, "CANCELED", "canceled", "The task was canceled by the user",
                            is_error=True)
                doc.update(status="FAILED", completion_time=iso(time.time()), is_ok=False,
                           nice_status=None, subtasks_canceled=doc["subtasks_pending"],
                           subtasks_pending=0,
                           fatal_error={"code": "CANCELED", "description": "canceled"})
                self.state.mark_dirty()
                code, message = "Canceled", "The task has been cancelled successfully."
        return Response(200, {"DATA_TYPE": "result", "code": code, "message": message,
                              "request_id": uuid.uuid4().hex[:9], "resource": request.path})

    def update_task(self, request: Request, task_id: str) -> Response:
        """``PUT task/<id>``: a running task's ``label`` or ``deadline``."""
        token = self.emulator.auth.check(request, TRANSFER_RS)
        body = request.json()
        changes = {key: body[key] for key in ("label", "deadline") if key in body}
        if body.get("DATA_TYPE", "task") != "task" or set(body) - {"DATA_TYPE", "label",
                                                                    "deadline"}:
            raise ApiError(400, "ClientError.BadRequest",
                           "Only a task's label and deadline can be updated")
        if "deadline" in changes:
            changes["deadline"] = iso(deadline_epoch(str(changes["deadline"])))
        with self.state.lock:
            doc = self._task(task_id, token)["doc"]
            if doc["status"] in TERMINAL:
                raise ApiError(409, "Conflict", f"Task {task_id} has completed")
            doc.update(changes)
            self.state.mark_dirty()
        return Response(200, {"DATA_TYPE": "result", "code": "Updated",
                              "message": "Updated task", "request_id": uuid.uuid4().hex[:9],
                              "resource": request.path})

    def _task_records(self, request: Request, task_id: str, key: str,
                      data_type: str) -> Response:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        with self.state.lock:
            records = list(self._task(task_id, token).get(key, []))
        return Response(200, {"DATA_TYPE": data_type, "marker": 0, "next_marker": None,
                              "DATA": records})

    def successful_transfers(self, request: Request, task_id: str) -> Response:
        return self._task_records(request, task_id, "successful", "successful_transfers")

    def skipped_errors(self, request: Request, task_id: str) -> Response:
        return self._task_records(request, task_id, "skipped", "skipped_errors")

    def pause_info(self, request: Request, task_id: str) -> Response:
        """No pause rules exist here: nothing pauses a task but its collections' flags."""
        token = self.emulator.auth.check(request, TRANSFER_RS)
        with self.state.lock:
            self._task(task_id, token)
        return Response(200, {"DATA_TYPE": "pause_info_limited", "pause_rules": [],
                              "source_pause_message": None,
                              "source_pause_message_share": None,
                              "destination_pause_message": None,
                              "destination_pause_message_share": None})
