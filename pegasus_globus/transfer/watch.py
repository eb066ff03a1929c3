"""Wait for a Globus task: notice completion fast, cost few calls, never trust a silent failure."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

QUICK_POLL = 0.25  # seconds between polls while the task is young
SOONEST_POLL = 0.02  # seconds: the shortest wait for a task expected to end sooner
RATE_PROBE = 0.05  # seconds from the first sight of items under way to the poll that times them
# a poll for a task's expected end waits a tenth longer: one that comes a hair before the end
# costs another poll and SOONEST_POLL more, one a tenth late costs only that tenth
END_MARGIN = 1.1
QUICK_PERIOD = 2.0  # seconds: how long a task counts as young
POLL_GROWTH = 1.5
LONGEST_POLL = 15.0
TRANSIENT_POLL_FAILURES = 20  # consecutive failed polls tolerated before giving up

# nice_status values of an ACTIVE task that Globus retries until the deadline, although only
# a change on the collection (a file appearing, a permission granted) could make them pass
PATH_ERRORS = frozenset({"FILE_NOT_FOUND", "PERMISSION_DENIED", "NOT_A_DIRECTORY",
                         "IS_A_DIRECTORY", "FILE_SIZE_CHANGED", "QUOTA_EXCEEDED",
                         "INVALID_PATH", "EXPIRED_DATA_ACCESS"})

log = logging.getLogger("pegasus_globus")


class TransferFailed(Exception):
    """The batch did not fully succeed. ``reasons`` holds one line per failure."""

    def __init__(self, summary: str, reasons: list[str] | None = None, code: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.reasons = reasons or []
        self.code = code  # the Globus error code, when Globus refused a call


@dataclass
class TaskOutcome:
    task_id: str
    status: str
    document: dict[str, Any] = field(repr=False)
    polls: int = 0
    gave_up: str = ""  # why the watcher cancelled the task, if it did


def poll_delays() -> Any:
    """0 (at once: on an idle service a small task is done by the time it is asked about),
    then every 0.25 s for 2 s (a service takes a second or two to pick a task up: the end of
    a short task is seen within 0.25 s), then 0.375, 0.56, ... growing to 15 s: an hour-long
    task costs a few hundred polls."""
    yield 0.0
    for _ in range(round(QUICK_PERIOD / QUICK_POLL)):
        yield QUICK_POLL
    delay = QUICK_POLL
    while True:
        delay = min(delay * POLL_GROWTH, LONGEST_POLL)
        yield delay


def items_done(task: dict[str, Any]) -> int:
    """How many of the task's items are over, whichever way (Globus counts them in
    ``subtasks_*``)."""
    return sum(task.get(f"subtasks_{kind}") or 0 for kind in (
        "succeeded", "failed", "canceled", "expired", "skipped_errors"))


def time_to_finish(task: dict[str, Any], done_since: int, since: float) -> float | None:
    """Seconds the task should still take at the rate of its last ``since`` seconds, in
    which ``done_since`` items went; None if none went. The rate since the last poll, not
    since the submission: that would count the service's pick-up as time spent on items
    and expect a 1,000-file task picked up after 1 s to take seconds more than it does."""
    total = task.get("subtasks_total") or 0
    if not total or done_since <= 0 or since <= 0:
        return None
    return max(total - items_done(task), 0) * since / done_since


def _human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def progress_line(task: dict[str, Any]) -> str:
    rate = task.get("effective_bytes_per_second") or 0
    return (f"task {task['task_id']}: {task.get('files_transferred', 0)}/{task.get('files', 0)} "
            f"files, {_human_bytes(task.get('bytes_transferred', 0))} done, "
            f"{_human_bytes(rate)}/s, status {task['status']}")


class TaskWatcher:
    """Polls one task until it ends.

    :param get_task: returns the task document as a dict
    :param cancel: cancels the task (``TransferClient.cancel_task``)
    :param inactive_timeout: seconds a task may stay INACTIVE before it is cancelled
    :param progress_interval: seconds between progress lines on the log
    :param path_error_grace: seconds an ACTIVE task may report a path error (see
        ``PATH_ERRORS``) before it is cancelled and reported as failed
    :param is_transient: says whether a polling error is worth polling again after
    :param sleep: for tests
    :param clock: for tests
    """

    def __init__(self, get_task: Callable[[str], Any], cancel: Callable[[str], Any],
                 inactive_timeout: float, progress_interval: float,
                 is_transient: Callable[[BaseException], bool],
                 sleep: Callable[[float], None] = time.sleep,
                 path_error_grace: float = 20.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._get_task = get_task
        self._cancel = cancel
        self._inactive_timeout = inactive_timeout
        self._progress_interval = progress_interval
        self._is_transient = is_transient
        self._sleep = sleep
        self._path_error_grace = path_error_grace
        self._clock = clock

    def wait(self, task_id: str) -> TaskOutcome:
        started = last_progress = self._clock()
        inactive_since: float | None = None
        path_error_since: float | None = None
        failures = polls = 0
        expected: float | None = None  # seconds from now to the end, at the recent rate
        last_seen: tuple[float, int] | None = None  # when the last poll was, items done then
        # polls brought forward for an end that was expected and did not come: each doubles
        # the soonest the next may be, since a task whose total grows as its items go (a
        # recursive item being walked) looks about to end at every poll
        brought_forward = 0
        for delay in poll_delays():
            if expected is not None and expected < delay:  # seen ending, not a step later
                delay = min(delay, max(expected, SOONEST_POLL * 2 ** brought_forward))
                brought_forward += 1
            if delay:
                self._sleep(delay)
            try:
                task = self._get_task(task_id)
                polls += 1
                failures = 0
            except Exception as error:
                failures += 1
                if not self._is_transient(error) or failures > TRANSIENT_POLL_FAILURES:
                    raise
                log.warning("polling task %s failed (%s); trying again", task_id,
                            error.__class__.__name__)
                continue
            status = task["status"]
            if status in ("SUCCEEDED", "FAILED"):
                return TaskOutcome(task_id, status, task, polls)
            now = self._clock()
            done = items_done(task)
            expected = None
            if status == "ACTIVE" and last_seen is not None:
                # items began at some moment since the last poll, so their rate is unknown:
                # one more poll soon measures it (one call, once a task)
                if last_seen[1] == 0 < done:
                    expected = RATE_PROBE
                else:
                    expected = time_to_finish(task, done - last_seen[1], now - last_seen[0])
                    expected = expected and expected * END_MARGIN
            last_seen = (now, done)
            if status == "INACTIVE":
                inactive_since = inactive_since or now
                if now - inactive_since > self._inactive_timeout:
                    self._cancel(task_id)
                    reason = task.get("nice_status_details") or task.get("nice_status") or ""
                    raise TransferFailed(
                        f"task {task_id} was INACTIVE for more than "
                        f"{self._inactive_timeout:g} s and was cancelled"
                        + (f" ({reason})" if reason else ""))
            else:
                inactive_since = None
            if status == "ACTIVE" and task.get("nice_status") in PATH_ERRORS:
                path_error_since = path_error_since or now
                if now - path_error_since >= self._path_error_grace:
                    self._cancel(task_id)
                    return TaskOutcome(task_id, "FAILED", task, polls, gave_up=(
                        f"{task['nice_status']} for {now - path_error_since:.0f} s; cancelled "
                        "(Globus would retry it until the task's deadline; "
                        "PEGASUS_GLOBUS_PATH_ERROR_GRACE sets how long to wait)"))
            else:
                path_error_since = None
            if now - last_progress >= self._progress_interval:
                log.info("%s, %.0f s so far", progress_line(task), now - started)
                last_progress = now
        raise AssertionError("unreachable: poll_delays never ends")
