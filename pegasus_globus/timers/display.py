"""What the timer commands print: fields declared once, text and JSON from the same data.

Summary and table follow the legacy Globus Timer CLI: ``Name``, ``Job ID``, ``Status``,
``Start``, ``Interval``, ``Next Run At``, ``Last Run Result``. Times are UTC, in ISO format.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from ..scopes import init_command
from .schedule import format_interval

Field = tuple[str, Callable[[dict[str, Any]], str]]
_DATA_ACCESS = re.compile(r"scopes/([0-9a-fA-F-]{36})/data_access")


def needs_consent(job: dict[str, Any]) -> list[str] | None:
    """The collections whose consent an auth-inactive timer needs ([] if none named)."""
    reason = job.get("inactive_reason") or {}
    if job.get("status") != "inactive" or reason.get("cause") != "globus_auth_requirements":
        return None
    return _DATA_ACCESS.findall(json.dumps(reason.get("detail") or {}))


def _status(job: dict[str, Any]) -> str:
    status = str(job.get("status"))
    collections = needs_consent(job)
    if collections is not None:
        return (f"{status}: Globus needs your consent; run "
                f"{init_command(collections, timers=True)}, then "
                f"pegasus-globus-timer job resume {job.get('job_id')}")
    if status == "inactive" and (job.get("inactive_reason") or {}).get("cause") == "user":
        return f"{status} (paused; pegasus-globus-timer job resume {job.get('job_id')})"
    return status


def _interval(job: dict[str, Any]) -> str:
    seconds = (job.get("schedule") or {}).get("interval_seconds") or job.get("interval")
    return f"{int(seconds)} s ({format_interval(seconds)})" if seconds else "once"


def _stop_after(job: dict[str, Any]) -> str:
    end = (job.get("schedule") or {}).get("end") or {}
    parts = []
    if end.get("count"):
        parts.append(f"{end['count']} runs")
    if end.get("datetime"):
        parts.append(end["datetime"])
    return " or ".join(parts) or "-"


def last_result(job: dict[str, Any]) -> str:
    """As the legacy CLI meant it: SUCCESS is the Transfer task submitted, not finished."""
    runs = (job.get("results") or {}).get("data") or []
    if not runs:
        return "not run yet"
    latest = runs[0]
    return "SUCCESS" if not latest.get("errors") and int(latest.get("status", 0)) < 400 \
        else "FAILURE"


def _get(key: str, empty: str = "-") -> Callable[[dict[str, Any]], str]:
    return lambda job: str(job.get(key)) if job.get(key) not in (None, "") else empty


SUMMARY_FIELDS: list[Field] = [
    ("Name", _get("name")),
    ("Job ID", _get("job_id")),
    ("Status", _status),
    ("Start", lambda job: str((job.get("schedule") or {}).get("start") or job.get("start"))),
    ("Interval", _interval),
    ("Stop After", _stop_after),
    ("Next Run At", _get("next_run", "none")),
    ("Runs", lambda job: str(job.get("number_of_runs", job.get("n_runs", 0)))),
    ("Last Run Result", last_result),
]
TABLE_FIELDS: list[Field] = [
    ("Name", _get("name")), ("Job ID", _get("job_id")), ("Status", _get("status")),
    ("Last Result", last_result),
]


def summary(job: dict[str, Any], fields: list[Field] = SUMMARY_FIELDS) -> str:
    width = max(len(label) for label, _ in fields) + 1
    return "\n".join(f"{label + ':':<{width}} {value(job)}" for label, value in fields)


def table(jobs: list[dict[str, Any]], fields: list[Field] = TABLE_FIELDS) -> str:
    rows = [[label for label, _ in fields]] + [[value(job) for _, value in fields]
                                               for job in jobs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(fields))]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def show(data: Any, output: str, render: Callable[[Any], str]) -> None:
    """Print JSON for ``--format json`` (and ``--verbose``), else the human rendering."""
    print(json.dumps(data, indent=2) if output == "json" else render(data))
