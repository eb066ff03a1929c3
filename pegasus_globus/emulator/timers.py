"""Emulated Globus Timers: transfer timers that really fire on the emulator's clock."""

from __future__ import annotations

import math
import re
import threading
import uuid
from typing import TYPE_CHECKING, Any

from .auth import TIMERS_RS, TIMERS_SCOPE, TRANSFER_SCOPE
from .clock import iso, parse_iso
from .errors import ApiError
from .paths import collection_id
from .web import Request, Response, Route

if TYPE_CHECKING:
    from .host import Host
    from .transfer import TransferService

MIN_INTERVAL_SECONDS = 60
# Transfer action provider options a legacy /jobs/ body may carry, kept as they are
LEGACY_OPTIONS = ("label", "sync_level", "verify_checksum", "encrypt_data", "preserve_timestamp",
                  "skip_source_errors", "fail_on_quota_errors", "delete_destination_extra")
MAX_INTERVAL_SECONDS = 3650 * 86400  # beyond, the next run's date overflows
ACTIVE_STATUSES = ("new", "loaded", "updated")
TICK_SECONDS = 0.02
LEGACY_CALLBACK = "https://actions.automate.globus.org/transfer/transfer/run"
# the legacy globus-timer-cli 0.2.9 sends LEGACY_CALLBACK as it is (timer_cli/main.py hard-codes
# it); an environment's host (default., sandbox., ...) is taken as the same action provider
LEGACY_CALLBACKS = re.compile(r"https://([a-z]+\.)?actions\.automate\.globus\.org"
                              r"/transfer/transfer/run/?")
# what the service fills in when a timer's transfer body leaves an option out
BODY_DEFAULTS = {
    "delete_destination_extra": False, "encrypt_data": False, "fail_on_quota_errors": False,
    "notify_on_failed": True, "notify_on_inactive": True, "notify_on_succeeded": True,
    "preserve_timestamp": False, "skip_source_errors": False, "store_base_path_info": False,
    "verify_checksum": True,
}


def _invalid(detail: str) -> ApiError:
    return ApiError(422, "VALIDATION_ERROR", detail)


def next_slot(start: float, interval: float | None, now: float) -> float | None:
    """The first scheduled time after ``now``: ``start + k * interval``, so runs never drift."""
    if now < start:
        return start
    if not interval:
        return None
    return start + (math.floor((now - start) / interval) + 1) * interval


class TimersService:
    def __init__(self, emulator: Host, transfer: TransferService) -> None:
        self.emulator = emulator
        self.transfer = transfer
        self.state = emulator.state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._schedule_loop, name="timers", daemon=True)

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v2/timer", self.create_timer),
            Route("GET", "/jobs/", self.list_jobs),
            Route("POST", "/jobs/", self.create_job),
            # the legacy globus-timer-cli 0.2.9 calls these without the trailing slash
            Route("GET", "/jobs", self.list_jobs),
            Route("POST", "/jobs", self.create_job),
            Route("GET", "/jobs/{job_id}", self.get_job),
            Route("PATCH", "/jobs/{job_id}", self.update_job),
            Route("DELETE", "/jobs/{job_id}", self.delete_job),
            Route("POST", "/jobs/{job_id}/pause", self.pause_job),
            Route("POST", "/jobs/{job_id}/resume", self.resume_job),
        ]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    # -- documents -------------------------------------------------------------------------

    def _doc(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job as the service shows it: the v2 timer fields and the legacy /jobs/ fields."""
        schedule, body = job["schedule"], job["body"]
        end = schedule.get("end") or {}
        results = [self._result(run) for run in reversed(job["runs"])]
        return {
            "job_id": job["job_id"], "name": job["name"], "timer_type": "transfer",
            "status": job["status"], "inactive_reason": job["inactive_reason"],
            "schedule": schedule, "body": body, "submitted_at": iso(job["submitted_at"]),
            "last_ran_at": iso(job["last_ran_at"]), "next_run": iso(job["next_run"]),
            "number_of_runs": job["number_of_runs"], "number_of_errors": job["number_of_errors"],
            # the legacy (v1) names, which /jobs/ has always served and older clients read
            "start": schedule.get("start") or schedule.get("datetime"),
            "interval": float(schedule["interval_seconds"])
            if schedule.get("interval_seconds") else None,
            "stop_after": {"n_runs": end.get("count"), "date": end.get("datetime")}
            if end else None,
            "callback_url": LEGACY_CALLBACK, "callback_body": {"body": self._legacy_body(body)},
            "scope": None,
            "n_runs": job["number_of_runs"], "n_errors": job["number_of_errors"],
            "results": {"data": results, "page_next": None},
            "activity": self._activity(job),
        }

    def _activity(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """What the timer is doing, as Timers v2 says (globus-cli's "Activity"); None once
        it will never run again."""
        if job["status"] == "inactive":
            return {"code": "paused"}
        if job["status"] not in ACTIVE_STATUSES:
            return None
        last = job["runs"][-1] if job["runs"] else None
        task = self.state["tasks"].get(last["task_id"]) if last else None
        if task and task["doc"]["status"] not in ("SUCCEEDED", "FAILED"):
            return {"code": "run_in_progress", "start_timestamp": iso(last["ran_at"])}
        if job["next_run"] is not None:
            return {"code": "awaiting_next_run"}
        return None

    @staticmethod
    def _legacy_body(body: dict[str, Any]) -> dict[str, Any]:
        """The transfer body in the Transfer action provider's (v1 timers') vocabulary."""
        return {
            "label": body.get("label"), "skip_source_errors": body["skip_source_errors"],
            "sync_level": body.get("sync_level"), "verify_checksum": body["verify_checksum"],
            "source_endpoint_id": body["source_endpoint"],
            "destination_endpoint_id": body["destination_endpoint"],
            "transfer_items": [
                {"source_path": item["source_path"], "destination_path": item["destination_path"],
                 "recursive": bool(item.get("recursive", False))}
                for item in body["DATA"]
            ],
        }

    def _result(self, run: dict[str, Any]) -> dict[str, Any]:
        """One run as the legacy ``results`` list shows it: the Transfer action and its task."""
        task = self.state["tasks"].get(run["task_id"], {})
        details = {**task.get("doc", {}), "event_list": task.get("events", [])}
        status = details.get("status", "UNKNOWN")
        action_status = {"SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED"}.get(status, "ACTIVE")
        return {
            "ran_at": iso(run["ran_at"]), "status": 202, "errors": None,
            "data": {
                "action_id": run["task_id"], "creator_id":
                    f"urn:globus:auth:identity:{self.emulator.auth.identity_id}",
                # the task's own times, both on the real clock (ran_at is the timers' scaled
                # clock), so a run never completes before it starts
                "start_time": details.get("request_time") or iso(run["ran_at"]),
                "completion_time": details.get("completion_time"),
                "status": action_status, "display_status": status, "label": details.get("label"),
                "manage_by": [], "monitor_by": [], "release_after": "P30D", "details": details,
            },
        }

    def _job(self, job_id: str, token: dict[str, Any]) -> dict[str, Any]:
        """The timer, for its owner only: another identity's timer does not exist for it."""
        try:
            job_id = str(uuid.UUID(job_id))
        except ValueError:
            raise _invalid(f"Invalid job id '{job_id}': not a UUID") from None
        job = self.state["timers"].get(job_id)
        if job is None or self._owner(job) != token["sub"]:
            raise ApiError(404, "NOT_FOUND", f"Job {job_id} not found")
        return job

    def _owner(self, job: dict[str, Any]) -> str:
        return str(job.get("owner") or self.emulator.auth.identity_id)  # older state: the user

    # -- routes ----------------------------------------------------------------------------

    def create_timer(self, request: Request) -> Response:
        token = self.emulator.auth.check(request, TIMERS_RS)
        timer = request.json().get("timer")
        if not isinstance(timer, dict):
            raise _invalid("The request body must hold a 'timer' object")
        if timer.get("timer_type") != "transfer":
            raise _invalid("Only timer_type 'transfer' is supported by the emulator")
        job = self._create(token, timer.get("name") or "Unnamed timer",
                           self._schedule(timer.get("schedule")), timer.get("body"))
        return Response(201, {"timer": self._doc(job)})

    def create_job(self, request: Request) -> Response:
        """``POST /jobs/``: the legacy (v1) create that globus-sdk's ``create_job`` and the
        Globus Timer CLI's ``job transfer`` send, a Transfer action provider body."""
        token = self.emulator.auth.check(request, TIMERS_RS)
        job = request.json()
        missing = [key for key in ("start", "callback_url", "interval")
                   if job.get(key) in (None, "")]
        if missing:  # FastAPI's shape, as the service answers it
            return Response(422, {"detail": [{"loc": ["body", key], "msg": "field required",
                                              "type": "value_error.missing"}
                                             for key in missing]})
        if not LEGACY_CALLBACKS.fullmatch(str(job["callback_url"])):
            raise _invalid("Only Transfer timers (the Transfer action provider's callback_url) "
                           "are supported by the emulator")
        action = (job.get("callback_body") or {}).get("body")
        if not isinstance(action, dict) or not isinstance(action.get("transfer_items"), list):
            raise _invalid("callback_body.body must hold a Transfer action with transfer_items")
        stop = job.get("stop_after") or {}
        # both: "the job stops running as soon as one stop condition is met" (legacy CLI)
        end = {key: stop[name] for key, name in (("count", "n_runs"), ("datetime", "date"))
               if stop.get(name)} or None
        schedule = self._schedule({"type": "recurring", "start": job["start"],
                                   "interval_seconds": job["interval"], "end": end})
        body = {"DATA_TYPE": "transfer", "source_endpoint": action.get("source_endpoint_id"),
                "destination_endpoint": action.get("destination_endpoint_id"),
                "DATA": [{"DATA_TYPE": "transfer_item", **item}
                         for item in action["transfer_items"]],
                **{key: action[key] for key in LEGACY_OPTIONS if key in action}}
        created = self._create(token, job.get("name") or "Unnamed timer", schedule, body)
        return Response(201, self._doc(created))

    def _create(self, token: dict[str, Any], name: str, schedule: dict[str, Any],
                body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("DATA"):
            raise _invalid("A transfer timer needs a body with DATA items")
        for key in ("source_endpoint", "destination_endpoint"):
            body[key] = collection_id(str(body.get(key)))
        body = {**BODY_DEFAULTS, **{k: v for k, v in body.items() if v is not None}}
        now = self.emulator.clock.now()
        start = parse_iso(schedule.get("start") or schedule.get("datetime") or iso(now))
        schedule["start" if schedule["type"] == "recurring" else "datetime"] = iso(start)
        job_id = str(uuid.uuid4())
        job = {
            "job_id": job_id, "name": name, "status": "new", "inactive_reason": None,
            "schedule": schedule, "body": body, "submitted_at": now, "last_ran_at": None,
            # a start already past runs at once; later runs keep to start + k * interval
            "next_run": max(start, now),
            "number_of_runs": 0, "number_of_errors": 0, "runs": [],
            "scopes": token["scopes"], "start_epoch": start, "owner": token["sub"],
        }
        with self.state.lock:
            self.state["timers"][job_id] = job
            self.state.mark_dirty()
        return job

    @staticmethod
    def _schedule(schedule: Any) -> dict[str, Any]:
        if not isinstance(schedule, dict) or schedule.get("type") not in ("recurring", "once"):
            raise _invalid("schedule must be an object of type 'recurring' or 'once'")
        try:
            for key in ("start", "datetime"):
                if schedule.get(key):
                    schedule[key] = iso(parse_iso(str(schedule[key])))
            end = schedule.get("end") or {}
            if end.get("datetime"):
                end["datetime"] = iso(parse_iso(str(end["datetime"])))
        except ValueError as error:
            raise _invalid(f"Invalid date-time in schedule: {error}") from None
        if schedule["type"] == "recurring":
            interval = schedule.get("interval_seconds")
            if not isinstance(interval, (int, float)) or not (
                    MIN_INTERVAL_SECONDS <= interval <= MAX_INTERVAL_SECONDS):
                raise _invalid(f"interval_seconds must be a number from {MIN_INTERVAL_SECONDS} "
                               f"to {MAX_INTERVAL_SECONDS}")
            if end and not ((isinstance(end.get("count"), int) and end["count"] > 0)
                            or end.get("datetime")):
                raise _invalid("schedule.end needs a positive 'count' or a 'datetime'")
            if end:
                end.pop("condition", None)
                schedule["end"] = end
        return schedule  # a 'once' schedule without a datetime runs now, as the SDK documents

    def list_jobs(self, request: Request) -> Response:
        token = self.emulator.auth.check(request, TIMERS_RS)
        # deleted timers are listed only when asked for: by status, or with the legacy
        # show_deleted (the legacy globus-timer-cli's --show-deleted sends show_deleted=True)
        wanted = {s for value in request.query.get("filter_status", []) for s in value.split(",")}
        wanted = wanted or {"new", "loaded", "updated", "inactive", "delete_pending"}
        if (request.arg("show_deleted") or "").lower() in ("true", "1"):
            wanted.add("deleted")
        with self.state.lock:
            jobs = [self._doc(job) for job in self.state["timers"].values()
                    if job["status"] in wanted and self._owner(job) == token["sub"]]
        jobs.sort(key=lambda doc: doc["submitted_at"])
        return Response(200, {"jobs": jobs})

    def get_job(self, request: Request, job_id: str) -> Response:
        token = self.emulator.auth.check(request, TIMERS_RS)
        with self.state.lock:
            return Response(200, self._doc(self._job(job_id, token)))

    def update_job(self, request: Request, job_id: str) -> Response:
        token = self.emulator.auth.check(request, TIMERS_RS)
        changes = request.json()
        with self.state.lock:
            job = self._job(job_id, token)
            if job["status"] == "deleted":
                raise ApiError(409, "CONFLICT", f"Job {job['job_id']} has been deleted")
            if "name" in changes:
                job["name"] = str(changes["name"])
            if isinstance(changes.get("stop_after"), dict):
                stop = changes["stop_after"]
                end = {"count": stop.get("n_runs"), "datetime": stop.get("date")}
                job["schedule"]["end"] = {k: v for k, v in end.items() if v}
                self._reschedule(job)
            if job["status"] in ACTIVE_STATUSES:
                job["status"] = "updated"
            self.state.mark_dirty()
            return Response(200, self._doc(job))

    def delete_job(self, request: Request, job_id: str) -> Response:
        token = self.emulator.auth.check(request, TIMERS_RS)
        with self.state.lock:
            job = self._job(job_id, token)
            if job["status"] == "deleted":
                raise ApiError(404, "NOT_FOUND", f"Job {job['job_id']} has been deleted")
            job.update(status="deleted", next_run=None)
            self.state.mark_dirty()
            return Response(200, self._doc(job))

    def pause_job(self, request: Request, job_id: str) -> Response:
        token = self.emulator.auth.check(request, TIMERS_RS)
        with self.state.lock:
            job = self._job(job_id, token)
            if job["status"] == "deleted":
                raise ApiError(409, "CONFLICT", f"Job {job['job_id']} has been deleted")
            job.update(status="inactive", inactive_reason={"cause": "user", "detail": None})
            self.state.mark_dirty()
        return Response(200, {"message": f"Successfully paused job {job['job_id']}."})

    def resume_job(self, request: Request, job_id: str) -> Response:
        token = self.emulator.auth.check(request, TIMERS_RS)
        update_credentials = bool(request.json().get("update_credentials"))
        with self.state.lock:
            job = self._job(job_id, token)
            if job["status"] != "inactive":
                raise ApiError(409, "CONFLICT", f"Job {job['job_id']} is not inactive")
            if update_credentials:
                job["scopes"] = token["scopes"]
            job.update(status="loaded" if job["number_of_runs"] else "new", inactive_reason=None)
            self._reschedule(job)
            self.state.mark_dirty()
        return Response(200, {"message": f"Successfully resumed job {job['job_id']}."})

    # -- the scheduler ---------------------------------------------------------------------

    def _reschedule(self, job: dict[str, Any]) -> None:
        job["next_run"] = None if self._finished(job) else next_slot(
            job["start_epoch"], job["schedule"].get("interval_seconds"),
            self.emulator.clock.now())

    @staticmethod
    def _finished(job: dict[str, Any]) -> bool:
        end = job["schedule"].get("end") or {}
        if job["schedule"]["type"] == "once":
            return job["number_of_runs"] >= 1
        return bool(end.get("count")) and job["number_of_runs"] >= end["count"]

    def _schedule_loop(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            now = self.emulator.clock.now()
            with self.state.lock:
                due = [job for job in self.state["timers"].values()
                       if job["status"] in ACTIVE_STATUSES and job["next_run"] is not None
                       and job["next_run"] <= now]
                for job in due:
                    try:
                        self._fire(job, now)
                    except Exception as error:  # one bad timer (saved by an older emulator,
                        # say) must not stop the others or the service
                        job.update(status="inactive", next_run=None, inactive_reason={
                            "cause": "error", "detail": f"{type(error).__name__}: {error}"})
                        self.state.mark_dirty()

    def _fire(self, job: dict[str, Any], now: float) -> None:
        end = job["schedule"].get("end") or {}
        if end.get("datetime") and job["next_run"] > parse_iso(end["datetime"]):
            job["next_run"] = None
            self.state.mark_dirty()
            return
        last = job["runs"][-1]["task_id"] if job["runs"] else None
        running = last and self.state["tasks"][last]["doc"]["status"] not in ("SUCCEEDED", "FAILED")
        if not running:  # overlapping runs are skipped, as the service does
            self._run(job, now)
        job["next_run"] = None if self._finished(job) else next_slot(
            job["start_epoch"], job["schedule"].get("interval_seconds"), now)
        if job["status"] in ("new", "updated") and job["number_of_runs"]:
            job["status"] = "loaded"
        self.state.mark_dirty()

    def _run(self, job: dict[str, Any], now: float) -> None:
        body = job["body"]
        transfer = self.transfer
        # the timer scope carries its transfer dependency (bare `timer`, the SDK's default,
        # works); only data_access on collections that need it must be consented
        missing = transfer.missing_consents(
            [body["source_endpoint"], body["destination_endpoint"]], job["scopes"])
        if missing:
            dependency = f"{TRANSFER_SCOPE}[{' '.join('*' + s for s in missing)}]"
            job["number_of_errors"] += 1
            job.update(status="inactive", inactive_reason={
                "cause": "globus_auth_requirements",
                "detail": {
                    "code": "ConsentRequired",
                    "authorization_parameters": {
                        "session_message": "Missing required data_access consent",
                        "required_scopes": [f"{TIMERS_SCOPE}[{dependency}]"],
                    },
                },
            })
            return
        run_body = {**body, "label": body.get("label") or f"Timer {job['name']}"}
        task_id = transfer.create_task("TRANSFER", run_body, body["source_endpoint"],
                                       body["destination_endpoint"], self._owner(job))
        job["runs"].append({"task_id": task_id, "ran_at": now})
        job["last_ran_at"] = now
        job["number_of_runs"] += 1
