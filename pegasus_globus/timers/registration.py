"""``pegasus-globus-timer register|unregister``: timers from a workflow, created once.

Names are derived from the workflow and each group's collections, schedule and options, so
running ``register`` again (a retried job, a re-planned workflow) finds the timers it made by
name and creates nothing. A group whose items or label changed is reported, and replaced only
with ``--replace``. Created timer ids go to a ledger next to the workflow, which
``unregister`` uses to delete them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from ..files import write_atomically
from . import display
from .schedule import end_condition, format_interval, parse_datetime
from .service import api_errors
from .shape import catalog_problems, summary
from .workflow import PlanError, TimerPlan, load_workflow, plan, read_yaml


def ledger_path(workflow: str, explicit: str | None) -> Path:
    return Path(explicit) if explicit else Path(f"{workflow}.timers.json")


def read_ledger(path: Path) -> dict[str, str]:
    try:
        return dict(json.loads(path.read_text()).get("timers", {}))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise PlanError([f"ledger {path} is unreadable ({error}): fix or remove it"]) from None


def write_ledger(path: Path, workflow: str, timers: dict[str, str]) -> None:
    write_atomically(path, json.dumps({"workflow": workflow, "timers": timers}, indent=2,
                                      sort_keys=True))


def timer_payload(timer: TimerPlan) -> Any:
    import globus_sdk

    data = globus_sdk.TransferData(timer.source, timer.destination, label=timer.label,
                                   **timer.options)
    for source, destination, recursive in timer.body_items():
        data.add_item(source, destination, recursive=recursive)
    end = end_condition(timer.interval, parse_datetime(timer.start) if timer.start else None,
                        timer.stop_after_runs, parse_datetime(timer.stop_after_date)
                        if timer.stop_after_date else None)
    schedule = globus_sdk.RecurringTimerSchedule(
        timer.interval, start=timer.start or globus_sdk.MISSING, end=end or globus_sdk.MISSING)
    return globus_sdk.TransferTimer(name=timer.name, schedule=schedule, body=data)


def _same(job: dict[str, Any], timer: TimerPlan) -> bool:
    body = job.get("body") or {}
    items = sorted({(i["source_path"], i["destination_path"], bool(i.get("recursive")))
                    for i in body.get("DATA") or []})
    return items == timer.body_items() and body.get("label") == timer.label


def register(client: Any, timers: list[TimerPlan], replace: bool) -> list[dict[str, Any]]:
    """Create what is missing; returns one outcome per timer."""
    jobs = client.list_jobs(query_params={"filter_status": "new,loaded,updated,inactive"})
    existing = {job["name"]: job for job in jobs["jobs"]}
    outcomes = []
    for timer in timers:
        job = existing.get(timer.name)
        if job is not None and _same(job, timer):
            outcomes.append({"name": timer.name, "action": "unchanged", "job_id": job["job_id"]})
            continue
        if job is not None and not replace:
            outcomes.append({"name": timer.name, "action": "changed", "job_id": job["job_id"],
                             "note": "items or label differ: run with --replace to replace"})
            continue
        if job is not None:
            client.delete_job(job["job_id"])
        created = client.create_timer(timer_payload(timer))["timer"]
        outcomes.append({"name": timer.name, "action": "replaced" if job else "created",
                         "job_id": created["job_id"]})
    return outcomes


def describe(timer: TimerPlan) -> dict[str, Any]:
    return {"name": timer.name, "source": timer.source, "destination": timer.destination,
            "interval": timer.interval, "start": timer.start,
            "stop_after_runs": timer.stop_after_runs, "stop_after_date": timer.stop_after_date,
            "options": timer.options, "label": timer.label,
            "items": [list(item) for item in timer.body_items()], "files": len(timer.files)}


def _plan_text(plans: list[dict[str, Any]]) -> str:
    lines = [f"{len(plans)} timer(s) planned:"]
    for p in plans:
        end = "".join((f", stop after {p['stop_after_runs']} runs" if p["stop_after_runs"]
                       else "", f", stop at {p['stop_after_date']}" if p["stop_after_date"]
                       else ""))
        lines.append(f"  {p['name']}: {p['source']} -> {p['destination']}, every "
                     f"{format_interval(p['interval'])}{end}, {len(p['items'])} item(s) for "
                     f"{p['files']} file(s)")
    return "\n".join(lines)


def register_command(ctx: Any, args: argparse.Namespace) -> None:
    catalogs = [load_workflow_catalog(path) for path in args.replica_catalog or []]
    timers = plan(load_workflow(args.workflow), catalogs)  # all validated before any call
    if args.dry_run:
        display.show([describe(t) for t in timers], args.format, _plan_text)
        return
    ledger = ledger_path(args.workflow, args.ledger)
    recorded = read_ledger(ledger)
    client = ctx.timers()
    outcomes = api_errors(lambda: register(client, timers, args.replace))
    recorded.update({o["name"]: o["job_id"] for o in outcomes if o["action"] != "changed"})
    write_ledger(ledger, args.workflow, recorded)
    display.show(outcomes, args.format, lambda rows: "\n".join(
        f"{o['action']:<9} {o['job_id']}  {o['name']}" + (f"  ({o['note']})" if "note" in o
                                                          else "") for o in rows))


def unregister_command(ctx: Any, args: argparse.Namespace) -> None:
    ledger = ledger_path(args.workflow, args.ledger)
    recorded = read_ledger(ledger)
    client = ctx.timers()
    deleted = []
    for name, job_id in sorted(recorded.items()):
        api_errors(lambda j=job_id: client.delete_job(j))
        deleted.append({"name": name, "job_id": job_id, "action": "deleted"})
    write_ledger(ledger, args.workflow, {})
    display.show(deleted, args.format, lambda rows: "\n".join(
        f"deleted   {o['job_id']}  {o['name']}" for o in rows) or "no timers recorded")


def load_workflow_catalog(path: str) -> dict[str, Any]:
    import yaml

    try:
        catalog = read_yaml(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise PlanError([f"cannot read replica catalog {path}: {error}"]) from None
    problems = catalog_problems(catalog, "replica")
    if problems:
        raise PlanError([f"replica catalog {path} is not a Pegasus 5 replica catalog: "
                         f"{summary(problems)}"])
    return catalog


def add_register_commands(groups: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    for name, handler, text in (
            ("register", register_command, "create the timers a workflow's metadata declares"),
            ("unregister", unregister_command, "delete the timers 'register' created")):
        sub = command(groups, name, handler, text)
        sub.add_argument("workflow", metavar="WORKFLOW.yml", help="a Pegasus 5 workflow")
        sub.add_argument("--ledger", metavar="PATH",
                         help="where created timer ids are kept (default: WORKFLOW.yml"
                         ".timers.json)")
        if name == "register":
            sub.add_argument("--dry-run", action="store_true", help="print the plan only")
            sub.add_argument("--replace", action="store_true",
                             help="replace timers whose items or label changed")
            sub.add_argument("--replica-catalog", action="append", metavar="FILE",
                             help="a replica catalog YAML with the files' go:// replicas "
                             "(repeatable; inline catalogs are read too)")
