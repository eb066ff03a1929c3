"""For workflow authors: declare timers on Pegasus.api objects, with typed, checked values.

    from pegasus_globus.timers.authoring import globus_timer, add_timer_registration

    globus_timer(analysis_job, interval="1d", destination="go://<uuid>/backups/",
                 source="go://<uuid>/results/", stop_after_runs=30)
    add_timer_registration(workflow, "workflow.yml", after=[analysis_job],
                           transformation_catalog=tc)
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path
from typing import Any, Iterable

from ..transfer.urls import parse_go_url
from .schedule import parse_datetime, parse_interval, parse_sync_level
from .workflow import PREFIX


def globus_timer(target: Any, *, interval: str | int, destination: str | None = None,
                 source: str | None = None, start: str | dt.datetime | None = None,
                 stop_after_runs: int | None = None,
                 stop_after_date: str | dt.datetime | None = None,
                 name: str | None = None, label: str | None = None,
                 recursive: bool | None = None, sync_level: str | None = None,
                 verify_checksum: bool | None = None, encrypt_data: bool | None = None,
                 preserve_timestamp: bool | None = None) -> Any:
    """Add ``globus.timer.*`` metadata to a Pegasus.api Workflow, Job or File.

    Values are checked now, so a mistake fails the script that writes the workflow, not the
    run. ``interval`` is seconds or ``1d``/``8h``/``1h30m``/``2w``; dates without a zone are
    local time. With both ``stop_after_runs`` and ``stop_after_date`` the earlier ends the
    timer. Returns ``target``.
    """
    parse_interval(str(interval))
    for url in (destination, source):
        if url is not None:
            parse_go_url(url)
    if stop_after_runs is not None and int(stop_after_runs) < 1:
        raise ValueError(f"stop_after_runs must be positive, not {stop_after_runs}")
    if sync_level is not None:
        parse_sync_level(sync_level)
    metadata = {"interval": interval, "destination": destination, "source": source,
                "start": _date(start), "stop_after_runs": stop_after_runs,
                "stop_after_date": _date(stop_after_date), "name": name, "label": label,
                "recursive": recursive, "sync_level": sync_level,
                "verify_checksum": verify_checksum, "encrypt_data": encrypt_data,
                "preserve_timestamp": preserve_timestamp}
    target.add_metadata(**{f"{PREFIX}{key}": _text(value) for key, value in metadata.items()
                           if value is not None})
    return target


def _date(value: str | dt.datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.astimezone()).isoformat()
    parse_datetime(value)
    return value


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def add_timer_registration(workflow: Any, workflow_file: str, after: Iterable[Any] = (),
                           transformation_catalog: Any = None, site: str = "local",
                           executable: str | None = None) -> Any:
    """Add a job that registers the workflow's timers, after the jobs producing the data.

    The job runs ``pegasus-globus-timer register <workflow_file>`` on ``site``, which is
    idempotent: a retried or re-planned run creates no second set of timers. ``executable``
    defaults to the command installed beside this Python, else the one on PATH: HTCondor
    runs a job's executable by its path, without a PATH to search.
    """
    from Pegasus.api import Job, Transformation, TransformationCatalog

    beside = Path(sys.executable).parent / "pegasus-globus-timer"
    path = executable or (str(beside) if beside.is_file() else None) or shutil.which(
        "pegasus-globus-timer") or "pegasus-globus-timer"
    transformation = Transformation("pegasus-globus-timer", site=site, pfn=path,
                                    is_stageable=False)
    if transformation_catalog is None:
        transformation_catalog = TransformationCatalog()
        workflow.add_transformation_catalog(transformation_catalog)
    transformation_catalog.add_transformations(transformation)
    job = Job(transformation, _id="register_globus_timers").add_args("register", workflow_file)
    job.add_pegasus_profile(label="globus-timers")
    workflow.add_jobs(job)
    parents = list(after)
    if parents:
        workflow.add_dependency(job, parents=parents)
    return job
