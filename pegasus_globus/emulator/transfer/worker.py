"""Running a Transfer task: its worker thread copies (or deletes) item by item, retries path
errors until the deadline as Globus does, and survives an emulator restart mid-item."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fnmatch
import functools
import hashlib
import os
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ...files import NEW_FILE_MODE, hidden_beside
from ..clock import iso
from ..errors import ApiError
from ..paths import inside, resolve

if TYPE_CHECKING:
    from ..host import Host

TERMINAL = ("SUCCEEDED", "FAILED")
INACTIVE_POLL = 0.05
# Globus keeps a task with one of these ACTIVE, reports it in nice_status and an error event,
# and tries the item again until the task's deadline (observed on the live service)
RETRIED_PATH_ERRORS = ("FILE_NOT_FOUND", "PERMISSION_DENIED")
# what a task counts as it goes, restored when an item starts over after a restart
COUNTERS = ("files", "directories", "files_skipped", "files_transferred", "bytes_transferred",
            "bytes_checksummed", "subtasks_skipped_errors")
PATH_ERROR_RETRY = 1.0  # real seconds between tries; Globus waits longer
BLOCK = 1 << 20  # bytes read at a time to copy or checksum a file


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


def deadline_epoch(timestamp: str) -> float:
    """Seconds since the epoch of an ISO 8601 time; one without a zone is UTC, as Globus says."""
    try:
        moment = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ApiError(400, "ClientError.BadRequest",
                       f"Invalid deadline '{timestamp}': use ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


@functools.lru_cache(maxsize=256)  # asked before each file a task copies
def _deadline(timestamp: str) -> float:
    """A task's deadline (always a string: checked at submission) in seconds since the epoch."""
    return deadline_epoch(timestamp)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _md5_of(fd: int) -> str:
    """The checksum of the open file ``fd``, read from its start (its offset is kept)."""
    digest = hashlib.md5()
    offset = 0
    while block := os.pread(fd, BLOCK, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def _copy(source: int, target: int, checksum: bool) -> str | None:
    """Copy the open file ``source`` into ``target``; returns the copy's md5 when asked
    (taken from the blocks as they are written, not by reading the copy back)."""
    digest = hashlib.md5() if checksum else None
    while block := os.read(source, BLOCK):
        if digest is not None:
            digest.update(block)
        view = memoryview(block)
        while view:
            view = view[os.write(target, view):]
    return digest.hexdigest() if digest is not None else None


def _create(tmp: str) -> int:
    """A new file at ``tmp``, its directories made as needed. O_EXCL never opens through a
    link; a file of that name was left by a copy an emulator restart cut short."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
    try:
        return os.open(tmp, flags, 0o600)
    except FileNotFoundError:  # the target's directory is new: made once, not stat'ed per file
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
    except FileExistsError:
        os.unlink(tmp)
    return os.open(tmp, flags, 0o600)


def _stat(path: Path) -> os.stat_result | None:
    """``path``'s stat, links followed; None where ``Path.exists`` says it does not exist."""
    try:
        return os.stat(path)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return None
        raise


def _raise(error: OSError) -> None:
    """os.walk's onerror: a directory that cannot be listed fails the task, never leaves its
    files out of a copy that then succeeds."""
    raise error


def _globus_path(root: Path, local: Path) -> str:
    """The collection's path of ``local``, a path spelled below the collection's ``root``."""
    return "/" + str(local)[len(str(root).rstrip("/")) + 1:]


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


def add_event(task: dict[str, Any], code: str, description: str, details: str = "",
              is_error: bool = False) -> None:
    task["events"].append({
        "DATA_TYPE": "event", "code": code, "description": description,
        "details": details or description, "is_error": is_error, "time": iso(time.time()),
    })


class _Closing(Exception):
    """The emulator is closing: the task stops where it is, unfinished, and a restarted
    emulator resumes it (``TransferService.resume_unfinished``)."""


class TaskWorker:
    """Runs tasks, each in a thread of its own."""

    def __init__(self, emulator: Host) -> None:
        self.emulator = emulator
        self.state = emulator.state
        self._cancelled: set[str] = set()
        self._closing = threading.Event()
        self._workers: list[threading.Thread] = []

    def start(self, task_id: str) -> None:
        worker = threading.Thread(target=self._run, args=(task_id,), name=f"task-{task_id[:8]}",
                                  daemon=True)
        self._workers[:] = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def stop(self) -> None:
        """Stop every task's worker and wait for them: none writes in the collections or the
        state once the emulator is closed (its directory can then be removed)."""
        self._closing.set()
        for worker in list(self._workers):
            worker.join()

    def _pause(self, seconds: float) -> None:
        if self._closing.wait(seconds):
            raise _Closing()

    def cancel(self, task_id: str) -> None:
        """Stop the task's copy in flight (its document says FAILED already)."""
        self._cancelled.add(task_id)

    # -- a task, item by item ----------------------------------------------------------------

    def _collections(self, doc: dict[str, Any]) -> list[str]:
        return [c for c in (doc["source_endpoint_id"], doc["destination_endpoint_id"]) if c]

    def _run(self, task_id: str) -> None:
        with contextlib.suppress(_Closing):  # left unfinished, for a restart to resume
            self._run_task(task_id)
            with self.state.lock:
                # its worker gone, nothing changes a finished task (a cancel or an update
                # refuses it): its text need not be made again at each write of the state
                if self.state["tasks"][task_id]["doc"]["status"] in TERMINAL:
                    self.state.seal("tasks", task_id)

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
        except OSError as error:  # its words, not its file's name: a path of the service's
            self._finish(task, "FAILED", "IO_ERROR", error.strerror or "I/O error", started)
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
                try:
                    if doc["type"] == "TRANSFER":
                        self._transfer_item(task_id, doc, item)
                    else:
                        self._delete_item(task_id, doc, task["body"], item)
                except OSError as error:
                    raise self._io_failure(error, doc) from None
            except TaskFailure as failure:
                if failure.code not in RETRIED_PATH_ERRORS:
                    raise
                with self.state.lock:
                    add_event(task, failure.code, failure.description, is_error=True)
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

    def _io_failure(self, error: OSError, doc: dict[str, Any]) -> TaskFailure:
        """An IO_ERROR naming the collection path the error is about (``<collection>:/path``),
        never the emulator's own directories, as Globus never shows its servers' paths; a
        copy's part file is named by its directory (what stood in the way)."""
        name = Path(os.fsdecode(error.filename)) if error.filename else None
        if name is not None and name.name.startswith(".") and name.name.endswith(".part"):
            name = name.parent
        why = error.strerror or "I/O error"  # never str(error): it may hold a local path
        for collection in self._collections(doc):
            root = self.emulator.collection_path(collection)
            if name is not None and (name == root or root in name.parents):
                return TaskFailure("IO_ERROR", f"{collection}:{_globus_path(root, name)}: {why}")
        return TaskFailure("IO_ERROR", why)

    def _finish(self, task: dict[str, Any], status: str, code: str, description: str,
                started: float) -> None:
        doc = task["doc"]
        with self.state.lock:
            if doc["status"] in TERMINAL:  # cancelled meanwhile
                return
            failed = status == "FAILED"
            add_event(task, code, description, is_error=failed)
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

    def _check_live(self, task_id: str, doc: dict[str, Any]) -> None:
        if self._closing.is_set():
            raise _Closing()
        if task_id in self._cancelled or doc["status"] in TERMINAL:
            raise TaskFailure("CANCELED", "The task was canceled")
        if time.time() > _deadline(doc["deadline"]):
            raise TaskFailure("DEADLINE", f"The task's deadline {doc['deadline']} has passed"
                              + (f" (last error: {doc['nice_status_details']})"
                                 if doc["nice_status"] not in ("OK", "Queued") else ""))

    # -- copying and deleting ----------------------------------------------------------------

    def _transfer_item(self, task_id: str, doc: dict[str, Any], item: dict[str, Any]) -> None:
        source, destination = doc["source_endpoint_id"], doc["destination_endpoint_id"]
        for collection in (source, destination):
            if self.emulator.collection_flags(collection).get("permission_denied"):
                raise TaskFailure("PERMISSION_DENIED",
                                  f"Permission denied on collection {collection}")
        roots = (self.emulator.collection_path(source), self.emulator.collection_path(destination))
        # paths are checked at submission, but a timer's runs are submitted by no one
        try:
            dst = resolve(roots[1], item["destination_path"])
        except ApiError as error:
            raise TaskFailure("PERMISSION_DENIED", error.message) from None
        try:
            src = resolve(roots[0], item["source_path"])
        except ApiError as error:
            if not doc["skip_source_errors"]:
                raise TaskFailure("PERMISSION_DENIED", error.message) from None
            self._skip(task_id, doc, item["source_path"], item["destination_path"],
                       "PERMISSION_DENIED", error.message)
            return
        source_stat = _stat(src)
        if source_stat is None:
            if doc["skip_source_errors"]:
                self._skip(task_id, doc, item["source_path"], item["destination_path"],
                           "FILE_NOT_FOUND", "No such file or directory",
                           is_directory=bool(item.get("recursive")))
                return
            raise TaskFailure("FILE_NOT_FOUND",
                              f"No such file or directory: {source}:{item['source_path']}")
        is_dir = stat.S_ISDIR(source_stat.st_mode)
        recursive = item.get("recursive")
        if recursive is None:
            recursive = is_dir
        if is_dir != bool(recursive):
            raise TaskFailure("INVALID_ITEM", f"{item['source_path']} is "
                              + ("a directory: submit it as recursive" if is_dir
                                 else "not a directory, but was submitted as recursive"))
        if doc["delete_destination_extra"] and is_dir and dst.is_dir():
            self._delete_extra(src, dst, doc.get("filter_rules") or [])
        # a file item's two paths were just resolved, which refuses a link out of a collection
        pairs = self._file_pairs(src, dst, doc) if is_dir else iter([(src, dst)])
        for src_file, dst_file in pairs:
            self._check_live(task_id, doc)
            # a link inside a collection may point out of it: never read or write through one
            source_inside = not is_dir or inside(roots[0], src_file)
            if not source_inside and doc["skip_source_errors"]:
                self._skip(task_id, doc, _globus_path(roots[0], src_file),
                           _globus_path(roots[1], dst_file), "PERMISSION_DENIED",
                           "A symbolic link out of the collection is not followed",
                           symlink_target=os.readlink(src_file)
                           if src_file.is_symlink() else None)
                continue
            if not (source_inside and (not is_dir or inside(roots[1], dst_file))):
                raise TaskFailure("PERMISSION_DENIED", f"{src_file.name}: a symbolic link out "
                                  "of the collection is not followed")
            if self._copy_file(task_id, src_file, dst_file, doc):
                with self.state.lock:
                    self.state["tasks"][task_id].setdefault("successful", []).append({
                        "DATA_TYPE": "successful_transfer",
                        "source_path": _globus_path(roots[0], src_file),
                        "destination_path": _globus_path(roots[1], dst_file)})

    def _skip(self, task_id: str, doc: dict[str, Any], source_path: str,
              destination_path: str, code: str, details: str, is_directory: bool = False,
              symlink_target: str | None = None) -> None:
        """``skip_source_errors``: a source path the task cannot read is passed over and
        recorded, as the service lists it in ``skipped_errors``."""
        with self.state.lock:
            doc["files_skipped"] += 1
            doc["subtasks_skipped_errors"] += 1
            self.state["tasks"][task_id].setdefault("skipped", []).append({
                "DATA_TYPE": "skipped_error", "source_path": source_path,
                "destination_path": destination_path, "error_code": code,
                "error_time": iso(time.time()), "error_details": details,
                "external_error_message": None, "checksum_algorithm": None,
                "is_directory": is_directory, "is_symlink": symlink_target is not None,
                "symlink_target": symlink_target, "is_delete_destination_extra": False})
            self.state.mark_dirty()

    def _file_pairs(self, src: Path, dst: Path, doc: dict[str, Any]) -> Iterator[tuple[Path, Path]]:
        """The files of the directory ``src`` the filter rules include, with their targets."""
        rules = doc.get("filter_rules") or []
        for directory, dirnames, filenames in os.walk(src, onerror=_raise):
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
        for directory, dirnames, filenames in os.walk(dst, topdown=True, onerror=_raise):
            relative = Path(directory).relative_to(dst)
            for name in [*dirnames, *filenames]:
                kind = "dir" if name in dirnames else "file"
                there = dst / relative / name
                if not _included(rules, name, kind) or (src / relative / name).exists():
                    continue
                if kind == "dir" and not there.is_symlink():
                    try:
                        shutil.rmtree(there)
                    except OSError as error:  # its name is relative to a directory in there
                        raise OSError(error.errno, error.strerror, str(there)) from None
                    dirnames.remove(name)
                else:
                    there.unlink()

    def _copy_file(self, task_id: str, src: Path, dst: Path, doc: dict[str, Any]) -> bool:
        """Copy one file; says whether it was copied (False: already in sync)."""
        source = os.open(src, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO's open would wait
        try:
            status = os.fstat(source)
            if not stat.S_ISREG(status.st_mode):  # a FIFO, a device: no file to copy
                kind = "a named pipe" if stat.S_ISFIFO(status.st_mode) else "not a regular file"
                raise OSError(errno.EINVAL, f"{kind}, not copied", str(src))
            size = status.st_size
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
            self._land(task_id, source, src, dst, doc)
        finally:
            os.close(source)
        with self.state.lock:
            doc["files_transferred"] += 1
            doc["bytes_transferred"] += size
            if doc["verify_checksum"]:
                doc["bytes_checksummed"] += size
            self.state.mark_dirty()
        return True

    def _land(self, task_id: str, source: int, src: Path, dst: Path, doc: dict[str, Any]) -> None:
        """Copy the open file ``source`` to ``dst``: into a file beside it, then a rename, so
        a reader never sees half a file. With ``verify_checksum``, the copy's checksum is
        taken from the blocks as they are written, and the source's by reading it again, as
        Globus checksums each end: a source rewritten while it was copied does not match."""
        # one name per task and target: a task copies its files one at a time
        tmp = hidden_beside(dst, f"{task_id[:8]}.part")
        target = _create(tmp)
        try:
            try:
                copy_sum = _copy(source, target, doc["verify_checksum"])
                if doc["preserve_timestamp"]:
                    shutil.copystat(src, tmp)
                if copy_sum is not None and _md5_of(source) != copy_sum:
                    raise TaskFailure("CHECKSUM_MISMATCH", f"Checksum mismatch for {src.name}")
                os.fchmod(target, NEW_FILE_MODE)  # as a new file gets, not the part file's 0600
            finally:
                os.close(target)
            self._check_live(task_id, doc)  # cancelled while copying: nothing lands
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self.emulator.hand_over(dst)

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
