"""Emulated Globus Transfer (API v0.10): tasks that really copy files between collections."""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import hashlib
import os
import shutil
import stat as stat_module
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..files import NEW_FILE_MODE
from .auth import TRANSFER_RS, TRANSFER_SCOPE, data_access_scope, granted_data_access
from .clock import iso
from .errors import ApiError
from .paths import collection_id, inside
from .web import Request, Response, Route

if TYPE_CHECKING:
    from .host import Host

SYNC_LEVELS = {"exists": 0, "size": 1, "mtime": 2, "checksum": 3}
TERMINAL = ("SUCCEEDED", "FAILED")
DEADLINE_SECONDS = 24 * 3600
INACTIVE_POLL = 0.05
# Globus keeps a task with one of these ACTIVE, reports it in nice_status and an error event,
# and tries the item again until the task's deadline (observed on the live service)
RETRIED_PATH_ERRORS = ("FILE_NOT_FOUND", "PERMISSION_DENIED")
# what a task counts as it goes, restored when an item starts over after a restart
COUNTERS = ("files", "directories", "files_skipped", "files_transferred", "bytes_transferred",
            "bytes_checksummed", "subtasks_skipped_errors")
PATH_ERROR_RETRY = 1.0  # real seconds between tries; Globus waits longer


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


def _ls_filtered(entries: list[dict[str, Any]], filters: str) -> list[dict[str, Any]]:
    """``ls`` filter clauses joined by ``/``: ``name:~glob*``, ``name:a,b``, ``type:dir``,
    ``size:>=100`` (comparisons on numbers)."""
    for clause in (c for c in filters.split("/") if c):
        key, _, condition = clause.partition(":")
        if condition.startswith("~"):
            entries = [e for e in entries if fnmatch.fnmatchcase(str(e.get(key)), condition[1:])]
        elif condition[:2] in (">=", "<=") or condition[:1] in ("<", ">", "="):
            operator = condition[:2] if condition[1:2] == "=" else condition[:1]
            limit = float(condition[len(operator):] or 0)
            compare = {">=": float.__ge__, "<=": float.__le__, ">": float.__gt__,
                       "<": float.__lt__, "=": float.__eq__}[operator]
            entries = [e for e in entries if isinstance(e.get(key), (int, float))
                       and compare(float(e[key]), limit)]
        else:
            entries = [e for e in entries if str(e.get(key)) in condition.split(",")]
    return entries


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


def _included(rules: list[dict[str, Any]], name: str, kind: str) -> bool:
    """Globus' rule: the first rule whose pattern and type match decides; none: included."""
    for rule in rules:
        if rule.get("type") in (None, kind) and fnmatch.fnmatchcase(name, rule["name"]):
            return rule["method"] == "include"
    return True


class TaskFailure(Exception):
    """Ends a task as FAILED; ``code`` becomes the error event's and fatal_error's code."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


def _epoch(timestamp: str) -> float:
    """Seconds since the epoch of an ISO 8601 time; one without a zone is UTC, as Globus says."""
    try:
        moment = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ApiError(400, "ClientError.BadRequest",
                       f"Invalid deadline '{timestamp}': use ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _in_sync(src: Path, dst: Path, level: int | None) -> bool:
    """Whether ``sync_level`` says ``dst`` needs no copy (0 exists, 1 size, 2 mtime, 3 checksum)."""
    if level is None or not dst.is_file():
        return False
    if level == 0:
        return True
    source, target = src.stat(), dst.stat()
    if source.st_size != target.st_size:
        return False
    if level == 1:
        return True
    if level == 2:
        return int(target.st_mtime) >= int(source.st_mtime)
    return _md5(src) == _md5(dst)


def _file_entry(path: Path, name: str | None = None) -> dict[str, Any]:
    info = path.lstat()
    kind = "dir" if stat_module.S_ISDIR(info.st_mode) else "file"
    return {
        "DATA_TYPE": "file", "name": name or path.name, "type": kind,
        "link_target": None, "link_group": None, "link_last_modified": None, "link_size": None,
        "link_user": None, "permissions": f"{stat_module.S_IMODE(info.st_mode):04o}",
        "size": info.st_size, "user": "emulator", "group": "emulator",
        "last_modified": time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(info.st_mtime)),
    }


class _Closing(Exception):
    """The emulator is closing: the task stops where it is, unfinished, and a restarted
    emulator resumes it (:meth:`TransferService.resume_unfinished`)."""


class TransferService:
    def __init__(self, emulator: Host) -> None:
        self.emulator = emulator
        self.state = emulator.state
        self._cancelled: set[str] = set()
        self._closing = threading.Event()
        self._workers: list[threading.Thread] = []

    def stop(self) -> None:
        """Stop every task's worker and wait for them: none writes in the collections or the
        state once the emulator is closed (its directory can then be removed)."""
        self._closing.set()
        for worker in list(self._workers):
            worker.join()

    def _pause(self, seconds: float) -> None:
        if self._closing.wait(seconds):
            raise _Closing()

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
            Route("GET", f"{v}/endpoint/{{endpoint_id}}", self.get_endpoint),
            Route("POST", f"{v}/endpoint/{{endpoint_id}}/autoactivate", self.autoactivate),
            Route("GET", f"{v}/operation/endpoint/{{endpoint_id}}/ls", self.ls),
            Route("POST", f"{v}/operation/endpoint/{{endpoint_id}}/mkdir", self.mkdir),
            Route("GET", f"{v}/operation/endpoint/{{endpoint_id}}/stat", self.stat),
            Route("POST", f"{v}/operation/endpoint/{{endpoint_id}}/rename", self.rename),
        ]

    def resume_unfinished(self) -> None:
        """Restart the workers of tasks that were running when the emulator last stopped."""
        for task_id, task in list(self.state["tasks"].items()):
            if task["doc"]["status"] not in TERMINAL:
                self._start(task_id)

    # -- consent and permissions -----------------------------------------------------------

    def missing_consents(self, collections: list[str], scopes: list[str]) -> list[str]:
        """The data_access scopes these token scopes lack for consent-requiring collections."""
        granted = granted_data_access(scopes)
        return [
            data_access_scope(c) for c in dict.fromkeys(collections)
            if self.emulator.collection_flags(c).get("consent_required") and c not in granted
        ]

    def _require_consent(self, collections: list[str], token: dict[str, Any]) -> None:
        missing = self.missing_consents(collections, token["scopes"])
        if missing:
            required = [f"{TRANSFER_SCOPE}[{' '.join('*' + s for s in missing)}]"]
            raise ApiError(
                403, "ConsentRequired", "Missing required data_access consent",
                required_scopes=required,
                authorization_parameters={
                    "session_message": "Missing required data_access consent",
                    "required_scopes": required,
                },
            )

    def _require_permission(self, collection: str) -> None:
        if self.emulator.collection_flags(collection).get("permission_denied"):
            raise ApiError(403, "EndpointPermissionDenied",
                           f"Permission denied on collection {collection}")

    # -- task creation ---------------------------------------------------------------------

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
        self._require_consent([source, destination], token)
        return self._accept(request, body, "TRANSFER", source, destination, token["sub"])

    def submit_delete(self, request: Request) -> Response:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        body = request.json()
        if body.get("DATA_TYPE") != "delete":
            raise ApiError(400, "ClientError.BadRequest", "DATA_TYPE must be 'delete'")
        endpoint = collection_id(str(body.get("endpoint")))
        for item in self._items(body, "delete_item", ("path",)):
            self.emulator.resolve(endpoint, item["path"])
        self._require_consent([endpoint], token)
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
            _epoch(body["deadline"])
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
        self._start(task_id)
        return task_id

    # -- task execution --------------------------------------------------------------------

    def _start(self, task_id: str) -> None:
        worker = threading.Thread(target=self._run, args=(task_id,), name=f"task-{task_id[:8]}",
                                  daemon=True)
        self._workers[:] = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def _collections(self, doc: dict[str, Any]) -> list[str]:
        return [c for c in (doc["source_endpoint_id"], doc["destination_endpoint_id"]) if c]

    def _run(self, task_id: str) -> None:
        with contextlib.suppress(_Closing):  # left unfinished, for a restart to resume
            self._run_task(task_id)

    def _run_task(self, task_id: str) -> None:
        task = self.state["tasks"][task_id]
        doc = task["doc"]
        self._pause(self.emulator.settings["task_latency"])
        while any(self.emulator.collection_flags(c).get("inactive")
                  for c in self._collections(doc)):
            with self.state.lock:
                if doc["status"] in TERMINAL:
                    return
                if doc["status"] != "INACTIVE":
                    doc.update(status="INACTIVE", nice_status="INACTIVE",
                               nice_status_details="A collection of this task is inactive")
                    self.state.mark_dirty()
            self._pause(INACTIVE_POLL)
        with self.state.lock:
            if doc["status"] in TERMINAL:
                return
            doc.update(status="ACTIVE", nice_status="OK", nice_status_details=None)
        started = time.monotonic()
        try:
            for index, item in enumerate(task["body"]["DATA"]):
                if index < task.get("items_done", 0):
                    continue  # done before a restart
                self._begin_item(task, index)
                self._run_item(task_id, task, item)
                with self.state.lock:
                    doc["subtasks_pending"] -= 1
                    doc["subtasks_succeeded"] += 1
                    task["items_done"] = index + 1
                    self.state.mark_dirty()
        except TaskFailure as failure:
            self._finish(task, "FAILED", failure.code, failure.description, started)
        except OSError as error:
            self._finish(task, "FAILED", "IO_ERROR", str(error), started)
        else:
            self._finish(task, "SUCCEEDED", "SUCCEEDED", "succeeded", started)

    def _begin_item(self, task: dict[str, Any], index: int) -> None:
        """Note the counters as an item starts; an item interrupted by a restart starts over
        from them, so nothing it had counted is counted twice."""
        doc = task["doc"]
        with self.state.lock:
            mark = task.get("item_mark")
            if mark and mark["index"] == index:  # resumed in the middle of this item
                doc.update(mark["counters"])
                del task.setdefault("successful", [])[mark["successful"]:]
                del task.setdefault("skipped", [])[mark["skipped"]:]
            else:
                task["item_mark"] = {
                    "index": index, "counters": {key: doc[key] for key in COUNTERS},
                    "successful": len(task.get("successful", [])),
                    "skipped": len(task.get("skipped", []))}
            self.state.mark_dirty()

    def _run_item(self, task_id: str, task: dict[str, Any], item: dict[str, Any]) -> None:
        """One item, tried again after a path error until the task's deadline, as Globus does."""
        doc = task["doc"]
        while True:
            try:
                if doc["type"] == "TRANSFER":
                    self._transfer_item(task_id, doc, item)
                else:
                    self._delete_item(task_id, doc, task["body"], item)
            except TaskFailure as failure:
                if failure.code not in RETRIED_PATH_ERRORS:
                    raise
                with self.state.lock:
                    self._event(task, failure.code, failure.description, is_error=True)
                    doc.update(nice_status=failure.code, nice_status_details=failure.description,
                               nice_status_short_description=failure.code.replace("_", " ")
                               .lower(), is_ok=False, faults=doc["faults"] + 1)
                    self.state.mark_dirty()
                self._pause(PATH_ERROR_RETRY)
                self._check_live(task_id, doc)
                continue
            with self.state.lock:
                if doc["nice_status"] != "OK":
                    doc.update(nice_status="OK", nice_status_details=None, is_ok=True)
            return

    def _finish(self, task: dict[str, Any], status: str, code: str, description: str,
                started: float) -> None:
        doc = task["doc"]
        with self.state.lock:
            if doc["status"] in TERMINAL:  # cancelled meanwhile
                return
            failed = status == "FAILED"
            self._event(task, code, description, is_error=failed)
            elapsed = max(time.monotonic() - started, 1e-3)
            doc.update(
                status=status, completion_time=iso(time.time()), is_ok=not failed,
                nice_status=None, nice_status_short_description=None,
                effective_bytes_per_second=int(doc["bytes_transferred"] / elapsed),
                fatal_error={"code": code, "description": description} if failed else None,
            )
            if failed:
                doc["subtasks_failed"] += doc["subtasks_pending"]
                doc["subtasks_pending"] = 0
            self.state.mark_dirty()

    @staticmethod
    def _event(task: dict[str, Any], code: str, description: str, details: str = "",
               is_error: bool = False) -> None:
        task["events"].append({
            "DATA_TYPE": "event", "code": code, "description": description,
            "details": details or description, "is_error": is_error, "time": iso(time.time()),
        })

    def _check_live(self, task_id: str, doc: dict[str, Any]) -> None:
        if self._closing.is_set():
            raise _Closing()
        if task_id in self._cancelled or doc["status"] in TERMINAL:
            raise TaskFailure("CANCELED", "The task was canceled")
        if time.time() > _epoch(doc["deadline"]):
            raise TaskFailure("DEADLINE", f"The task's deadline {doc['deadline']} has passed"
                              + (f" (last error: {doc['nice_status_details']})"
                                 if doc["nice_status"] not in ("OK", "Queued") else ""))

    def _transfer_item(self, task_id: str, doc: dict[str, Any], item: dict[str, Any]) -> None:
        source, destination = doc["source_endpoint_id"], doc["destination_endpoint_id"]
        for collection in (source, destination):
            if self.emulator.collection_flags(collection).get("permission_denied"):
                raise TaskFailure("PERMISSION_DENIED",
                                  f"Permission denied on collection {collection}")
        src = self.emulator.resolve(source, item["source_path"])
        dst = self.emulator.resolve(destination, item["destination_path"])
        if not src.exists():
            if doc["skip_source_errors"]:
                with self.state.lock:
                    doc["files_skipped"] += 1
                    doc["subtasks_skipped_errors"] += 1
                    self.state["tasks"][task_id].setdefault("skipped", []).append({
                        "DATA_TYPE": "skipped_error", "source_path": item["source_path"],
                        "destination_path": item["destination_path"],
                        "error_code": "FILE_NOT_FOUND", "error_time": iso(time.time()),
                        "error_details": "No such file or directory",
                        "external_error_message": None, "checksum_algorithm": None,
                        "is_directory": bool(item.get("recursive")), "is_symlink": False,
                        "symlink_target": None, "is_delete_destination_extra": False})
                return
            raise TaskFailure("FILE_NOT_FOUND",
                              f"No such file or directory: {source}:{item['source_path']}")
        recursive = item.get("recursive")
        if recursive is None:
            recursive = src.is_dir()
        if src.is_dir() != bool(recursive):
            raise TaskFailure("INVALID_ITEM", f"{item['source_path']} is "
                              + ("a directory: submit it as recursive" if src.is_dir()
                                 else "not a directory, but was submitted as recursive"))
        roots = (self.emulator.collection_path(source), self.emulator.collection_path(destination))
        if doc["delete_destination_extra"] and src.is_dir() and dst.is_dir():
            self._delete_extra(src, dst, doc.get("filter_rules") or [])
        for src_file, dst_file in self._file_pairs(src, dst, doc):
            self._check_live(task_id, doc)
            # a link inside a collection may point out of it: never read or write through one
            # (a file item's own paths were checked by resolve already)
            if (src_file, dst_file) != (src, dst) and not (
                    inside(roots[0], src_file) and inside(roots[1], dst_file)):
                raise TaskFailure("PERMISSION_DENIED", f"{src_file.name}: a symbolic link out "
                                  "of the collection is not followed")
            if self._copy_file(task_id, src_file, dst_file, doc):
                with self.state.lock:
                    self.state["tasks"][task_id].setdefault("successful", []).append({
                        "DATA_TYPE": "successful_transfer",
                        "source_path": "/" + str(src_file.relative_to(roots[0])),
                        "destination_path": "/" + str(dst_file.relative_to(roots[1]))})

    def _file_pairs(self, src: Path, dst: Path, doc: dict[str, Any]) -> Iterator[tuple[Path, Path]]:
        if src.is_file():
            yield src, dst
            return
        rules = doc.get("filter_rules") or []
        for directory, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(d for d in dirnames if _included(rules, d, "dir"))
            filenames = [f for f in filenames if _included(rules, f, "file")]
            relative = Path(directory).relative_to(src)
            (dst / relative).mkdir(parents=True, exist_ok=True)
            with self.state.lock:
                doc["directories"] += 1
            for name in sorted(filenames):
                yield Path(directory) / name, dst / relative / name

    @staticmethod
    def _delete_extra(src: Path, dst: Path, rules: list[dict[str, Any]]) -> None:
        """``delete_destination_extra``: what the destination tree has and the source tree
        has not goes, except what the filter rules exclude (never copied, never judged)."""
        for directory, dirnames, filenames in os.walk(dst, topdown=True):
            relative = Path(directory).relative_to(dst)
            for name in [*dirnames, *filenames]:
                kind = "dir" if name in dirnames else "file"
                there = dst / relative / name
                if not _included(rules, name, kind) or (src / relative / name).exists():
                    continue
                if kind == "dir" and not there.is_symlink():
                    shutil.rmtree(there)
                    dirnames.remove(name)
                else:
                    there.unlink()

    def _copy_file(self, task_id: str, src: Path, dst: Path, doc: dict[str, Any]) -> bool:
        """Copy one file; says whether it was copied (False: already in sync)."""
        size = src.stat().st_size
        with self.state.lock:
            doc["files"] += 1
        if _in_sync(src, dst, doc["sync_level"]):
            with self.state.lock:
                doc["files_skipped"] += 1
            return False
        bandwidth = self.emulator.settings["bandwidth"]
        if bandwidth:  # in steps, so a cancel stops the copy in flight
            until = time.monotonic() + self.emulator.clock.real_seconds(size / bandwidth)
            while time.monotonic() < until:
                self._check_live(task_id, doc)
                self._pause(min(0.05, max(0.0, until - time.monotonic())))
        dst.parent.mkdir(parents=True, exist_ok=True)
        # copy beside the target, then rename: a reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            if doc["preserve_timestamp"]:
                shutil.copystat(src, tmp)
            if doc["verify_checksum"] and _md5(src) != _md5(Path(tmp)):
                raise TaskFailure("CHECKSUM_MISMATCH", f"Checksum mismatch for {src.name}")
            os.chmod(tmp, NEW_FILE_MODE)  # as a new file gets, not mkstemp's 0600
            self._check_live(task_id, doc)  # cancelled while copying: nothing lands
            os.replace(tmp, dst)
            self.emulator.hand_over(dst)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        with self.state.lock:
            doc["files_transferred"] += 1
            doc["bytes_transferred"] += size
            if doc["verify_checksum"]:
                doc["bytes_checksummed"] += size
            self.state.mark_dirty()
        return True

    def _delete_item(self, task_id: str, doc: dict[str, Any], body: dict[str, Any],
                     item: dict[str, Any]) -> None:
        self._check_live(task_id, doc)
        collection = doc["source_endpoint_id"]
        if self.emulator.collection_flags(collection).get("permission_denied"):
            raise TaskFailure("PERMISSION_DENIED", f"Permission denied on collection {collection}")
        target = self.emulator.resolve(collection, item["path"])
        if not target.exists() and not target.is_symlink():
            if body.get("ignore_missing"):
                return
            raise TaskFailure("FILE_NOT_FOUND", f"No such file or directory: {item['path']}")
        if target.is_dir() and not target.is_symlink():
            if body.get("recursive"):
                shutil.rmtree(target)
            elif any(target.iterdir()):
                raise TaskFailure("DIRECTORY_NOT_EMPTY",
                                  f"{item['path']} is a non-empty directory: delete recursively")
            else:
                target.rmdir()
        else:
            target.unlink()
        with self.state.lock:
            doc["files"] += 1

    # -- task queries ----------------------------------------------------------------------

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
        return Response(200, self._page("event_list", events, request))

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
        return Response(200, self._page("task_list", docs, request))

    @staticmethod
    def _page(data_type: str, rows: list[dict[str, Any]], request: Request) -> dict[str, Any]:
        try:
            offset = int(request.arg("offset", "0") or 0)
            limit = int(request.arg("limit", "1000") or 1000)
        except ValueError:
            raise ApiError(400, "ClientError.BadRequest",
                           "offset and limit must be integers") from None
        page = rows[offset:offset + limit]
        return {"DATA_TYPE": data_type, "DATA": page, "length": len(page), "limit": limit,
                "offset": offset, "total": len(rows)}

    def cancel_task(self, request: Request, task_id: str) -> Response:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        with self.state.lock:
            task = self._task(task_id, token)
            doc = task["doc"]
            if doc["status"] in TERMINAL:
                code = "TaskComplete"
                message = "The task completed before the cancel request was processed"
            else:
                self._cancelled.add(task_id)
                self._event(task, "CANCELED", "canceled", "The task was canceled by the user",
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
            changes["deadline"] = iso(_epoch(str(changes["deadline"])))
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

    # -- collections -----------------------------------------------------------------------

    def get_endpoint(self, request: Request, endpoint_id: str) -> Response:
        self.emulator.auth.check(request, TRANSFER_RS)
        endpoint = collection_id(endpoint_id)
        flags = self.emulator.collection_flags(endpoint)
        auth = self.emulator.auth
        return Response(200, {
            "DATA_TYPE": "endpoint", "id": endpoint,
            "display_name": f"Emulated collection {endpoint[:8]}", "organization": "Emulator",
            "username": "u_emulator", "description": "A directory of the Globus emulator",
            # what clients read to decide whether data_access must be consented: a mapped
            # GCSv5 collection needs it, a guest collection has none
            "entity_type": "GCSv5_guest_collection" if flags.get("guest")
            else "GCSv5_mapped_collection",
            "high_assurance": bool(flags.get("high_assurance")),
            "authentication_timeout_mins": 30 if flags.get("high_assurance") else None,
            "gcs_version": "5.4.87", "owner_id": auth.identity_id, "owner_string": auth.username,
            "https_server": self.emulator.https.server(
                endpoint, request.headers.get("host", "127.0.0.1")),
            "gcs_manager_url": None, "public": False,
            "french_english_bilingual": False, "is_globus_connect": False,
            "globus_connect_setup_key": None, "gcp_connected": None, "gcp_paused": None,
            "s3_url": None, "s3_owner_activated": False, "host_endpoint_id": None,
            "host_path": None, "disable_verify": False, "disable_anonymous_writes": False,
            "force_verify": False, "force_encryption": False, "mfa_required": False,
            "myproxy_server": None, "myproxy_dn": None, "non_functional": False,
            "non_functional_endpoint_display_name": None, "non_functional_endpoint_id": None,
            "oauth_server": None, "default_directory": "/~/", "activated": True,
            "expires_in": -1, "expire_time": None, "shareable": False, "acl_available": False,
            "acl_editable": False, "in_use": False,
            "DATA": [{"DATA_TYPE": "server", "hostname": "127.0.0.1", "uri":
                      "gsiftp://127.0.0.1:2811", "port": 2811, "scheme": "gsiftp", "id": 1,
                      "subject": None}],
        })

    def autoactivate(self, request: Request, endpoint_id: str) -> Response:
        """Removed from globus-sdk 4, still called by globus-sdk 3 (stock Pegasus 5.1)."""
        self.emulator.auth.check(request, TRANSFER_RS)
        endpoint = collection_id(endpoint_id)
        return Response(200, {
            "DATA_TYPE": "activation_result", "code": "AlreadyActivated",
            "message": "Endpoint is already activated.", "endpoint": endpoint,
            "expires_in": -1, "expire_time": None, "length": 0, "DATA": [],
            "request_id": uuid.uuid4().hex[:9], "resource": request.path,
        })

    def _operation_target(self, request: Request, endpoint_id: str, path: str | None) -> Path:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        endpoint = collection_id(endpoint_id)
        if not path:
            raise ApiError(400, "ClientError.BadRequest", "A path is required")
        self._require_consent([endpoint], token)
        self._require_permission(endpoint)
        return self.emulator.resolve(endpoint, path)

    def ls(self, request: Request, endpoint_id: str) -> Response:
        path = request.arg("path", "/~/") or "/~/"
        target = self._operation_target(request, endpoint_id, path)
        if not target.exists():
            raise ApiError(404, "ClientError.NotFound", f"Directory '{path}' not found")
        if not target.is_dir():
            raise ApiError(502, "ExternalError.DirListingFailed.NotDirectory",
                           f"'{path}' is not a directory")
        show_hidden = request.arg("show_hidden", "true").lower() not in ("false", "0")
        entries = [_file_entry(child) for child in sorted(target.iterdir())
                   if show_hidden or not child.name.startswith(".")]
        entries = _ls_filtered(entries, request.arg("filter") or "")
        for order in reversed([o for o in (request.arg("orderby") or "").split(",") if o]):
            field, _, direction = order.strip().partition(" ")
            entries.sort(key=lambda e: (e.get(field) is None, e.get(field) or 0),
                         reverse=direction.upper() == "DESC")
        page = self._page("file_list", entries, request)
        path = path if str(path).endswith("/") else f"{path}/"  # as Globus answers: a directory
        return Response(200, {**page, "path": path, "absolute_path": path,
                              "endpoint": collection_id(endpoint_id)})

    def mkdir(self, request: Request, endpoint_id: str) -> Response:
        body = request.json()
        path = body.get("path")
        path = path if isinstance(path, str) else None
        target = self._operation_target(request, endpoint_id, path)
        if target.exists():
            raise ApiError(502, "ExternalError.MkdirFailed.Exists",
                           f"Path already exists: '{path}'")
        if not target.parent.is_dir():
            raise ApiError(404, "ClientError.NotFound", f"Parent directory of '{path}' not found")
        try:
            target.mkdir()
        except FileExistsError:  # made meanwhile by a concurrent request
            raise ApiError(502, "ExternalError.MkdirFailed.Exists",
                           f"Path already exists: '{path}'") from None
        self.emulator.hand_over(target)
        return Response(202, {"DATA_TYPE": "mkdir_result", "code": "DirectoryCreated",
                              "message": "The directory was created successfully",
                              "request_id": uuid.uuid4().hex[:9], "resource": request.path})

    def rename(self, request: Request, endpoint_id: str) -> Response:
        body = request.json()
        old, new = body.get("old_path"), body.get("new_path")
        if body.get("DATA_TYPE", "rename") != "rename" or not all(
                isinstance(p, str) for p in (old, new)):
            raise ApiError(400, "ClientError.BadRequest", "old_path and new_path are required")
        source = self._operation_target(request, endpoint_id, old)
        target = self._operation_target(request, endpoint_id, new)
        if not source.exists() and not source.is_symlink():
            raise ApiError(404, "ClientError.NotFound", f"Path '{old}' not found")
        if target.exists():
            raise ApiError(409, "ClientError.Conflict", f"Path '{new}' already exists")
        if not target.parent.is_dir():
            raise ApiError(404, "ClientError.NotFound", f"Parent directory of '{new}' not found")
        source.rename(target)
        return Response(200, {"DATA_TYPE": "result", "code": "FileRenamed",
                              "message": "File or directory renamed successfully",
                              "request_id": uuid.uuid4().hex[:9], "resource": request.path})

    def stat(self, request: Request, endpoint_id: str) -> Response:
        path = request.arg("path")
        target = self._operation_target(request, endpoint_id, path)
        if not target.exists():  # "NotFound", not ClientError.NotFound: globus-cli's stat
            raise ApiError(404, "NotFound", f"Path '{path}' not found")  # relies on it
        return Response(200, _file_entry(target, name=target.name or "/"))
