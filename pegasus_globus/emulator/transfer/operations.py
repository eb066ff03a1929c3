"""Transfer's file operations on a collection: ``ls``, ``mkdir``, ``rename``, ``stat``."""

from __future__ import annotations

import fnmatch
import stat as stat_module
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..auth import TRANSFER_RS
from ..errors import ApiError
from ..paths import collection_id
from ..web import Request, Response, Route
from .common import page, require_consent, require_permission, require_session

if TYPE_CHECKING:
    from ..host import Host


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


def _denied_by_endpoint(operation: Callable[[Request, str], Response],
                        command: str) -> Callable[[Request, str], Response]:
    """``operation``, answering a path the collection's storage will not let it read or
    write (POSIX permissions) as Globus does: 403 EndpointPermissionDenied, which globus-sdk
    does not retry (its own test data, ``globus_sdk.testing`` operation_stat's
    ``permission_denied``), where any other OSError is the server's 500."""

    def answered(request: Request, endpoint_id: str) -> Response:
        try:
            return operation(request, endpoint_id)
        except PermissionError as error:
            collection = collection_id(endpoint_id)
            raise ApiError(
                403, "EndpointPermissionDenied",
                f"Denied by endpoint, Error ({command})\nEndpoint: Emulated collection "
                f"{collection[:8]} ({collection})\nMessage: Fatal FTP Response\n---\n"
                f"Details: 500 Command failed : {error.strerror}.") from None
    return answered


class OperationService:
    def __init__(self, emulator: Host) -> None:
        self.emulator = emulator

    def routes(self) -> list[Route]:
        v = "/v0.10/operation/endpoint/{endpoint_id}"
        return [
            Route("GET", f"{v}/ls", _denied_by_endpoint(self.ls, "list")),
            Route("POST", f"{v}/mkdir", _denied_by_endpoint(self.mkdir, "mkdir")),
            Route("GET", f"{v}/stat", _denied_by_endpoint(self.stat, "list")),
            Route("POST", f"{v}/rename", _denied_by_endpoint(self.rename, "rename")),
        ]

    def _operation_target(self, request: Request, endpoint_id: str, path: str | None,
                          failed: str) -> Path:
        token = self.emulator.auth.check(request, TRANSFER_RS)
        endpoint = collection_id(endpoint_id)
        if not path:
            raise ApiError(400, "ClientError.BadRequest", "A path is required")
        require_consent(self.emulator, [endpoint], token)
        require_session(self.emulator, endpoint, token, failed)
        require_permission(self.emulator, endpoint)
        return self.emulator.resolve(endpoint, path)

    def ls(self, request: Request, endpoint_id: str) -> Response:
        path = request.arg("path", "/~/") or "/~/"
        target = self._operation_target(request, endpoint_id, path, "DirListingFailed")
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
        listing = page("file_list", entries, request)
        path = path if str(path).endswith("/") else f"{path}/"  # as Globus answers: a directory
        return Response(200, {**listing, "path": path, "absolute_path": path,
                              "endpoint": collection_id(endpoint_id)})

    def mkdir(self, request: Request, endpoint_id: str) -> Response:
        body = request.json()
        path = body.get("path")
        path = path if isinstance(path, str) else None
        target = self._operation_target(request, endpoint_id, path, "MkdirFailed")
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
        source = self._operation_target(request, endpoint_id, old, "RenameFailed")
        target = self._operation_target(request, endpoint_id, new, "RenameFailed")
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
        target = self._operation_target(request, endpoint_id, path, "StatFailed")
        if not target.exists():  # "NotFound", not ClientError.NotFound: globus-cli's stat
            raise ApiError(404, "NotFound", f"Path '{path}' not found")  # relies on it
        return Response(200, _file_entry(target, name=target.name or "/"))
