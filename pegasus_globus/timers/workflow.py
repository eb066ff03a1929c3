"""Timers declared in a Pegasus 5 workflow's metadata: read, validate, group.

A file is backed up by a timer when its effective metadata has ``globus.timer.interval``.
Effective metadata is the workflow's, overridden by the job's, by the file's replica entry and
by the job's ``uses`` entry for the file. Workflow- and job-level keys apply to the job's
output files; keys on a replica or ``uses`` entry apply to that file whatever its type.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..transfer.urls import parse_go_url
from .schedule import parse_bool, parse_datetime, parse_interval, parse_sync_level, utc_iso
from .shape import catalog_problems, shown, summary, workflow_problems

PREFIX = "globus.timer."
KEYS = {"interval", "start", "stop_after_runs", "stop_after_date", "destination", "source",
        "name", "label", "recursive", "sync_level", "verify_checksum", "encrypt_data",
        "preserve_timestamp"}


class PlanError(ValueError):
    """Every problem in the workflow's timer metadata, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class TimerPlan:
    """One timer to create: a source and destination collection, a schedule, options."""

    name: str
    label: str
    source: str
    destination: str
    interval: int
    start: str | None
    stop_after_runs: int | None
    stop_after_date: str | None
    options: dict[str, Any]
    items: list[tuple[str, str, bool]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def body_items(self) -> list[tuple[str, str, bool]]:
        return sorted(set(self.items))


def read_yaml(text: str) -> Any:
    """Safe YAML, with libyaml's C parser where PyYAML has it (4x faster on big workflows)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_workflow(path: str | Path) -> dict[str, Any]:
    import yaml

    try:
        document = read_yaml(Path(path).read_text())
    except OSError as error:
        raise PlanError([f"cannot read workflow {path}: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        raise PlanError([f"{path} is not YAML: {str(error).splitlines()[0]}"]) from None
    if not isinstance(document, dict) or "jobs" not in document:
        raise PlanError([f"{path} is not a Pegasus 5 workflow (no 'jobs')"])
    problems = workflow_problems(document)
    if problems:
        raise PlanError([f"{path} is not a Pegasus 5 workflow: {summary(problems)}"])
    return document


def _shaped(kind: type, value: Any, what: str, problems: list[str]) -> Any:
    """``value`` when it is a ``kind`` (list or mapping; None is an empty one), else an empty
    one and a problem naming ``what``."""
    if value is None:
        return kind()
    if isinstance(value, kind):
        return value
    problems.append(f"{what} should be a {'list' if kind is list else 'mapping'}, not "
                    f"{type(value).__name__} {shown(value)}: see Pegasus' workflow schema")
    return kind()


def _timer_keys(metadata: Any, what: str, problems: list[str]) -> dict[str, str]:
    return {key[len(PREFIX):]: str(value)
            for key, value in _shaped(dict, metadata, f"{what} metadata", problems).items()
            if str(key).startswith(PREFIX)}


def _go_replicas(workflow: dict[str, Any], catalogs: Iterable[Any],
                 problems: list[str]) -> dict[str, tuple[dict[str, str], str]]:
    """lfn -> (timer metadata of its replica entry, its go:// URL if any)."""
    found: dict[str, tuple[dict[str, str], str]] = {}
    for catalog in [workflow.get("replicaCatalog"), *catalogs]:
        catalog = _shaped(dict, catalog, "a replica catalog", problems)
        for replica in _shaped(list, catalog.get("replicas"), "replicas", problems):
            replica = _shaped(dict, replica, "a replica", problems)
            lfn = replica.get("lfn")
            pfns = _shaped(list, replica.get("pfns"), f"replica {lfn} pfns", problems)
            urls = [str(_shaped(dict, p, f"replica {lfn} pfn", problems).get("pfn", ""))
                    for p in pfns]
            go = next((u for u in urls if u.startswith("go://")), "")
            keys = _timer_keys(replica.get("metadata"), f"replica {lfn}", problems)
            previous = found.get(lfn, ({}, ""))
            found[lfn] = ({**previous[0], **keys}, go or previous[1])
    return found


def plan(workflow: dict[str, Any], catalogs: Iterable[Any] = ()) -> list[TimerPlan]:
    """The timers the workflow asks for, grouped; PlanError lists every problem found."""
    shape = workflow_problems(workflow)  # before anything walks or prints a value
    if shape:
        raise PlanError([f"not a Pegasus 5 workflow: {summary(shape)}"])
    catalogs = list(catalogs)
    for catalog in catalogs:
        shape = catalog_problems(catalog, "replica")
        if shape:
            raise PlanError([f"not a Pegasus 5 replica catalog: {summary(shape)}"])
    problems: list[str] = []
    name = str(workflow.get("name") or "workflow")
    workflow_keys = _timer_keys(workflow.get("metadata"), "the workflow's", problems)
    replicas = _go_replicas(workflow, catalogs, problems)
    groups: dict[str, TimerPlan] = {}
    for job in _shaped(list, workflow.get("jobs"), "jobs", problems):
        job = _shaped(dict, job, "a job", problems)
        job_id = job.get("id") or job.get("name")
        job_keys = _timer_keys(job.get("metadata"), f"job {job_id}", problems)
        for use in _shaped(list, job.get("uses"), f"job {job_id} uses", problems):
            use = _shaped(dict, use, f"job {job_id} uses entry", problems)
            lfn = use.get("lfn")
            replica_keys, go_url = replicas.get(lfn, ({}, ""))
            use_keys = _timer_keys(use.get("metadata"), f"job {job_id}, file {lfn}", problems)
            inherited = {**workflow_keys, **job_keys} if use.get("type") == "output" else {}
            keys = {**inherited, **replica_keys, **use_keys}
            if "interval" not in keys:
                continue
            where = f"job {job_id}, file {lfn}"
            try:
                timer = _one_timer(name, keys, go_url, lfn, where)
            except PlanError as error:
                problems.extend(error.problems)
                continue
            existing = groups.setdefault(timer.name, timer)
            if existing is not timer:
                if existing.label != timer.label or (existing.source, existing.destination,
                                                     existing.interval) != (
                        timer.source, timer.destination, timer.interval):
                    problems.append(f"{where}: two different timers would be named "
                                    f"'{timer.name}': give each its own {PREFIX}name")
                existing.items.extend(timer.items)
            existing.files.append(lfn)
    if problems:
        raise PlanError(sorted(set(problems)))
    return sorted(groups.values(), key=lambda t: t.name)


def _one_timer(workflow: str, keys: dict[str, str], go_url: str, lfn: str,
               where: str) -> TimerPlan:
    problems: list[str] = []

    def check(key: str, parse: Any) -> Any:
        if key not in keys:
            return None
        try:
            return parse(keys[key])
        except ValueError as error:
            problems.append(f"{where}: {PREFIX}{key}: {error}")
            return None

    unknown = sorted(set(keys) - KEYS)
    problems += [f"{where}: {PREFIX}{key} is not a timer key (known: "
                 f"{', '.join(sorted(KEYS))})" for key in unknown]
    interval = check("interval", parse_interval)
    start = check("start", lambda t: utc_iso(parse_datetime(t)))
    stop_date = check("stop_after_date", lambda t: utc_iso(parse_datetime(t)))
    runs = check("stop_after_runs", _positive_int)
    if "source" in keys:
        source = check("source", parse_go_url)
    else:
        try:
            source = parse_go_url(go_url) if go_url else None
        except ValueError as error:
            problems.append(f"{where}: its go:// replica: {error}")
            source = None
    destination = check("destination", parse_go_url)
    recursive = check("recursive", parse_bool)
    options = {key: value for key, value in (
        ("sync_level", check("sync_level", parse_sync_level)),
        ("verify_checksum", check("verify_checksum", parse_bool)),
        ("encrypt_data", check("encrypt_data", parse_bool)),
        ("preserve_timestamp", check("preserve_timestamp", parse_bool))) if value is not None}
    if "source" not in keys and not go_url:
        problems.append(f"{where}: no source: set {PREFIX}source or give the file a go:// "
                        "replica")
    if "destination" not in keys:
        problems.append(f"{where}: {PREFIX}destination is missing (go://<collection>/<path>)")
    if problems or source is None or destination is None or interval is None:
        raise PlanError(problems)
    if recursive is None:
        recursive = source.path.endswith("/")
    target = destination.path
    if target.endswith("/") and not source.path.endswith("/"):
        target = posixpath.join(target, posixpath.basename(source.path))
    identity = json.dumps([workflow, source.collection, destination.collection, interval,
                           start, runs, stop_date, options, keys.get("name"),
                           keys.get("label")], sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return TimerPlan(
        name=keys.get("name") or f"pegasus {workflow} {digest}",
        label=keys.get("label") or f"Pegasus workflow {workflow} timer {digest}",
        source=source.collection, destination=destination.collection, interval=interval,
        start=start, stop_after_runs=runs, stop_after_date=stop_date, options=options,
        items=[(source.path, target, recursive)])


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"'{text}' is not a positive whole number")
    return int(text)
