"""Transfers, mkdir and remove on Globus collections: done completely, or reported as failed."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import posixpath
import re
import time
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable

from ..scopes import init_command
from .options import TransferOptions
from .watch import TaskOutcome, TaskWatcher, TransferFailed

if TYPE_CHECKING:
    import globus_sdk

log = logging.getLogger("pegasus_globus")
RETRY_DELAYS = (1.0, 2.0, 4.0)  # our retries, after globus-sdk's own
# a cancel as the process ends: retries, the longest wait between tries and for an answer (s)
CANCEL_RETRIES, CANCEL_MAX_SLEEP, CANCEL_HTTP_TIMEOUT = 2, 2.0, 2.0
_COLLECTION_IN_SCOPE = re.compile(r"scopes/([0-9a-fA-F-]{36})/data_access")


def default_label(environ: dict[str, str] | None = None) -> str | None:
    """``"<PEGASUS_WF_UUID> - <PEGASUS_DAG_JOB_ID>"`` when both are set, as stock Pegasus."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get("PEGASUS_WF_UUID") and environ.get("PEGASUS_DAG_JOB_ID"):
        return f"{environ['PEGASUS_WF_UUID']} - {environ['PEGASUS_DAG_JOB_ID']}"
    return None


def is_transient(error: BaseException) -> bool:
    """Worth trying again: network trouble, or the service saying so (5xx, 429)."""
    import globus_sdk

    if isinstance(error, globus_sdk.NetworkError):
        return True
    if not isinstance(error, globus_sdk.GlobusAPIError):
        return False
    # a collection's definite answer can come as a 502 (ExternalError.MkdirFailed.Exists)
    if str(error.code).endswith(("Exists", "NotFound")):
        return False
    return error.http_status >= 500 or error.http_status == 429


def announced_retries(service: str) -> Any:
    """globus-sdk's retries (5, exponential back-off up to 10 s), each one logged with what
    failed and when the next try is: the service being down is no longer a silent minute."""
    import random

    from globus_sdk.transport import RetryConfig

    def backoff(context: Any) -> float:
        delay = context.backoff if context.backoff is not None else (
            (0.25 + 0.5 * random.random()) * 2 ** context.attempt)
        delay = min(delay, 10.0)
        error, response = context.exception, context.response
        if error is not None:
            detail = re.search(r"\[Errno -?\d+\] [^'\")]+", str(error))
            cause = f"cannot reach it ({detail.group() if detail else type(error).__name__})"
        elif response is not None and (response.status_code >= 500
                                       or response.status_code == 429):
            cause = f"it answered {response.status_code} {response.reason}"
        else:
            return delay  # a 401 before a token refresh: not trouble
        url = (error.request.url if error is not None and getattr(error, "request", None)
               else response.url if response is not None else "")
        log.warning("%s at %s: %s; try %d of 6 at %s (in %.1f s)", service,
                    url.split("?")[0], cause, context.attempt + 2,
                    time.strftime("%H:%M:%S", time.localtime(time.time() + delay)), delay)
        return delay

    return RetryConfig(backoff=backoff)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# a path the collection will not let you read or write (its path restrictions, its storage's
# permissions: Globus answers 403 EndpointPermissionDenied, path by path)
DENIED = ("the collection denies you access there (403 EndpointPermissionDenied): ask its "
          "administrator for access, or use a path you can reach")


class GlobusTransfers:
    """Runs Globus tasks to the end and says exactly what failed.

    :param client: a ``globus_sdk.TransferClient``
    :param options: transfer options (default: :meth:`TransferOptions.from_environment`)
    :param label: task label (default: :func:`default_label`)
    :param submitting: wraps each submission, so a caller can hold signals until the new
        task's id is known and the task can be cancelled (default: does nothing)
    """

    def __init__(self, client: globus_sdk.TransferClient, options: TransferOptions | None = None,
                 label: str | None = None, sleep: Callable[[float], None] = time.sleep,
                 submitting: Callable[[], ContextManager[Any]] = contextlib.nullcontext) -> None:
        self.client = client
        self.options = options or TransferOptions.from_environment()
        self.label = label if label is not None else default_label()
        self.current_task: str | None = None
        self._sleep = sleep
        self._submitting = submitting

    # -- the three operations ------------------------------------------------------------

    def transfer(self, source: str, destination: str,
                 files: Iterable[tuple[str, str]]) -> TaskOutcome:
        """Copy ``(source path, destination path)`` pairs; a path ending in / is a directory."""
        import globus_sdk

        files = list(files)
        options = self.options
        data = globus_sdk.TransferData(
            source, destination, label=self.label, sync_level=options.sync_level or
            globus_sdk.MISSING, verify_checksum=options.verify_checksum,
            preserve_timestamp=options.preserve_timestamp, encrypt_data=options.encrypt_data,
            deadline=self._deadline(), notify_on_succeeded=False, notify_on_failed=False,
            notify_on_inactive=False)
        for src, dst in files:
            # the service finds out whether a source is a directory; a trailing / says so
            data.add_item(src, dst, recursive=True if src.endswith("/") else globus_sdk.MISSING)
        what = f"transfer of {len(files)} item(s) from {source} to {destination}"
        return self._run(self.client.submit_transfer, data, what, [source, destination])

    def remove(self, collection: str, paths: Iterable[str], recursive: bool) -> TaskOutcome:
        """Delete paths; one already gone counts as deleted, so a retried cleanup succeeds."""
        import globus_sdk

        paths = list(paths)
        data = globus_sdk.DeleteData(
            collection, label=self.label, recursive=recursive, ignore_missing=True,
            deadline=self._deadline(), notify_on_succeeded=False, notify_on_failed=False,
            notify_on_inactive=False)
        for path in paths:
            data.add_item(path)
        what = f"removal of {len(paths)} path(s) on {collection}"
        return self._run(self.client.submit_delete, data, what, [collection])

    def mkdir(self, collection: str, paths: Iterable[str]) -> int:
        """Create directories and their missing parents; existing ones are fine.

        :returns: how many directories were created
        """
        return sum(self._mkdir(collection, posixpath.normpath(path)) for path in paths)

    def cancel_current(self) -> bool:
        """Cancel the task in progress, if any; says whether Globus took the cancel. Tried 3
        times, each given CANCEL_HTTP_TIMEOUT seconds to answer, at most CANCEL_MAX_SLEEP
        apart (about 1.5 s when Globus refuses, 8 s at most when it does not answer): the
        process is ending, and a batch system's soft kill (SIGTERM) is followed by SIGKILL
        within seconds."""
        if self.current_task is None:
            return False
        try:
            with self.client.retry_config.tune(max_retries=CANCEL_RETRIES,
                                               max_sleep=CANCEL_MAX_SLEEP), \
                    self.client.transport.tune(http_timeout=CANCEL_HTTP_TIMEOUT):
                self.client.cancel_task(self.current_task)
        except Exception as error:  # the process is ending: report, do not mask the cause
            log.warning("could not cancel task %s: %s", self.current_task,
                        error.__class__.__name__)
            return False
        return True

    # -- the machinery -------------------------------------------------------------------

    def _deadline(self) -> str:
        deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(
            hours=self.options.deadline_hours)
        return deadline.isoformat(timespec="seconds")

    def _call(self, what: str, call: Callable[[], Any], collections: list[str]) -> Any:
        """One API call, retried on transient errors, with failures turned into one line."""
        import globus_sdk

        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                return call()
            except globus_sdk.GlobusAPIError as error:
                if delay is None or not is_transient(error):
                    raise self._explain(what, error, collections) from None
            except globus_sdk.NetworkError as error:
                if delay is None:
                    raise TransferFailed(f"{what}: cannot reach Globus Transfer at "
                                         f"{self.client.base_url} ({error.__class__.__name__})"
                                         ": check the network, or GLOBUS_SDK_SERVICE_URL_"
                                         "TRANSFER") from None
            log.warning("%s: Globus Transfer still failing after attempt %d; trying again "
                        "in %g s", what, attempt + 1, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    def _explain(what: str, error: Any, collections: list[str]) -> TransferFailed:
        if error.http_status == 403 and error.code == "ConsentRequired":
            needed = _COLLECTION_IN_SCOPE.findall(error.text) or collections
            return TransferFailed(
                f"{what}: Globus needs your consent to access collection(s) "
                f"{', '.join(dict.fromkeys(needed))}: run {init_command(needed)}",
                code=error.code)
        if error.http_status == 401:
            return TransferFailed(f"{what}: Globus rejected the access token ({error.code}): "
                                  f"run {init_command()}", code=error.code)
        if error.code == "EndpointPermissionDenied":
            return TransferFailed(f"{what}: {DENIED}", code=error.code)
        return TransferFailed(f"{what}: Globus refused it ({error.http_status} {error.code}): "
                              f"{_one_line(error.message)}", code=error.code)

    def _run(self, submit: Callable[[Any], Any], data: Any, what: str,
             collections: list[str]) -> TaskOutcome:
        with self._submitting():
            # one submission id for every attempt: a retry can never create a second task
            data["submission_id"] = self._call(
                what, lambda: self.client.get_submission_id()["value"], collections)
            self.current_task = self._call(what, lambda: submit(data)["task_id"], collections)
        log.info("%s: task %s submitted", what, self.current_task)
        watcher = TaskWatcher(lambda task_id: self.client.get_task(task_id).data,
                              self.client.cancel_task,
                              self.options.inactive_timeout, self.options.progress_interval,
                              is_transient, sleep=self._sleep,
                              path_error_grace=self.options.path_error_grace)
        outcome = watcher.wait(self.current_task)
        self.current_task = None
        if outcome.status == "SUCCEEDED":
            return outcome
        reason = f" ({outcome.gave_up})" if outcome.gave_up else self._fatal(outcome.document)
        events = self._error_events(outcome)
        if outcome.gave_up:  # our own cancel is not a cause worth a line
            events = [e for e in events if not e.startswith("CANCELED:")]
        raise TransferFailed(f"{what}: task {outcome.task_id} {outcome.status}{reason}", events)

    @staticmethod
    def _fatal(task: dict[str, Any]) -> str:
        fatal = task.get("fatal_error") or {}
        return f" ({fatal.get('code')}: {_one_line(fatal.get('description', ''))})" if fatal else ""

    def _error_events(self, outcome: TaskOutcome) -> list[str]:
        try:
            events = self.client.task_event_list(outcome.task_id, limit=20,
                                                 query_params={"filter": "is_error:1"})
            # a retried path error repeats the same event: say each once
            return list(dict.fromkeys(
                f"{e['code']}: {_one_line(e.get('details') or e.get('description', ''))}"
                for e in events if e.get("is_error")))
        except Exception as error:  # the failure itself is already known and reported
            return [f"(the task's error events could not be read: {error.__class__.__name__})"]

    def _mkdir(self, collection: str, path: str) -> int:
        """Create ``path``, its missing parents first; recursion only as deep as the path."""
        if path in ("/", "/~", "."):
            return 0
        outcome = self._mkdir_once(collection, path)
        if outcome != "parent missing":
            return int(outcome == "created")
        parent = posixpath.dirname(path)
        created = self._mkdir(collection, parent)
        outcome = self._mkdir_once(collection, path)
        if outcome == "parent missing":  # the parents are there, yet Globus says one is not
            raise TransferFailed(
                f"mkdir {path} on {collection}: Globus says a parent is missing although "
                f"{parent} exists or was just created (is a parent a file?)", code="NotFound")
        return created + int(outcome == "created")

    def _mkdir_once(self, collection: str, path: str) -> str:
        """One mkdir: "created", "exists" or "parent missing"; any other refusal raises."""
        try:
            self._call(f"mkdir {path} on {collection}",
                       lambda: self.client.operation_mkdir(collection, path), [collection])
            return "created"
        except TransferFailed as failure:
            if failure.code.endswith("Exists"):
                return "exists"
            if "NotFound" in failure.code:
                return "parent missing"
            raise
