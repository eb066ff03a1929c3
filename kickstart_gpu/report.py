"""``pegasus-kickstart-gpu report PATH...``: GPU usage of a workflow run, per job and in total.

PATH is a Pegasus submit directory (its jobs' ``.out`` files and retries ``.out.NNN`` are
found), single ``.out`` files, or ``--events-file`` outputs (JSON lines). Each job's tries are
added up, each task of a clustered job on a row of its own (see :mod:`.usage`); rows are rolled
up per transformation and per site. Jobs, tries and tasks are counted as
``pegasus-statistics`` counts them; failed tries, records without GPU events and damaged
records are counted too.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from .record_reader import GpuBlock, Record, parse_record
from .usage import OUTSIDE_TASKS, Figures, Usage, block_figures

_ATTEMPT = re.compile(r"\.out(\.\d+)?$")
# in a submit directory, what else ends in .out: DAGMan's logs and POST scripts' output
_NOT_A_RECORD = re.compile(r"\.(dagman|lib|post)\.out(\.\d+)?$")
DATA_TRANSFORMATIONS = "pegasus::"  # create-dir, transfer, cleanup, rc-client: Pegasus' own
TOP = 5
CHUNK = 2000  # records a worker reads at a time; a run of fewer is read in this process


@dataclass
class Counts:
    """What the records say about the run as a whole, GPU or not."""

    files: int = 0
    failed_attempts: int = 0
    without_gpu_events: int = 0
    damaged: list[str] = field(default_factory=list)
    jobs: set[tuple[str, str]] = field(default_factory=set)  # (directory, job)
    tasks: set[tuple[str, str, Any]] = field(default_factory=set)  # and Pegasus' task id
    task_tries: int = 0
    timelines: list[Usage] = field(default_factory=list)  # --events-file runs beside records


def find_records(paths: Iterable[str]) -> Iterator[str]:
    """The records in ``paths``: regular files only (a FIFO would block the read), each once
    however often the paths name it. (Told by the directory entry's type, no stat a file:
    a stat and a realpath of each of 100,000 records took seconds.)"""
    seen: set[str] = set()

    def walk(directory: str) -> Iterator[str]:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from walk(entry.path)
            elif _ATTEMPT.search(entry.name) and not _NOT_A_RECORD.search(entry.name) and \
                    entry.is_file():
                yield entry.path

    for path in paths:
        found = walk(path) if os.path.isdir(path) else iter([path])
        for record in found:
            absolute = os.path.abspath(record)
            if absolute not in seen:
                seen.add(absolute)
                yield record


def job_name(path: str) -> str:
    return _ATTEMPT.sub("", os.path.basename(path)) or os.path.basename(path)


def _events_file(text: str, path: str) -> Record:
    """An --events-file output: a block per run (each run starts with its inventory, and
    several runs may append to one file)."""
    record = Record(path, events_file=True)
    found: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            event = None
        if not isinstance(event, dict):
            if line.strip():
                record.damaged.append(f"{path}, line {number}: not a JSON event")
            continue
        name = event.get("event")
        if name == "kickstart.inv.gpu.environment":  # a run starts
            found = {name: event, "kickstart.inv.gpu.stats": []}
        elif name == "kickstart.inv.gpu.stats" and found:
            found[name].append(event)
        elif name == "kickstart.inv.gpu.stats.max" and found:
            found[name] = event
            record.gpu_blocks.append(GpuBlock(found, None))
            found = {}
    return record


def load(path: str) -> Record:
    """A record or an --events-file output, read once."""
    try:
        with open(path, errors="replace") as handle:
            text = handle.read()
    except OSError as error:
        return Record(path, damaged=[f"{path}: {error.strerror}"])
    return _events_file(text, path) if text.lstrip().startswith('{"') else \
        parse_record(text, path)


class NotARecord(ValueError):
    """A file named on the command line is neither a record nor an events file."""


class _Rows(dict[tuple[str, str, str], Usage]):
    """The rows found so far, by directory (a sub-workflow's jobs are in their own), job and
    task."""

    def row(self, job: str, task: str, record: Record, invocation: dict[str, Any] | None,
            failed: bool) -> Usage:
        """The row, counting this try for it."""
        key = (os.path.dirname(record.path), job, task)
        usage = self.get(key)
        if usage is None:
            named = [invocation] if invocation else record.invocations
            usage = self[key] = Usage(
                job, task, transformation="+".join(sorted({str(i.get("transformation"))
                                                          for i in named})),
                site=next((str(i["resource"]) for i in named if i.get("resource")), ""),
                data_job=bool(named) and all(_is_data(i) for i in named))
        usage.attempts += 1
        usage.failed_attempts += failed
        return usage


def _is_data(invocation: dict[str, Any]) -> bool:
    return str(invocation.get("transformation")).startswith(DATA_TRANSFORMATIONS)


def _failed(invocation: dict[str, Any]) -> bool:
    return invocation.get("raw") not in (0, None)


def _figures(blocks: list[GpuBlock], invocations: list[dict[str, Any]], path: str,
             counts: Counts, keep_timeline: bool) -> Figures | None:
    """The widest of blocks covering the same run (a sidecar inside kickstart and one around
    it): the outer one, counted once."""
    durations = [i["duration"] for i in invocations if isinstance(i.get("duration"),
                                                                   (int, float))]
    found = []
    for block in blocks:
        try:
            found.append(block_figures(block.events, durations, keep_timeline))
        except Exception as error:  # whatever a damaged block holds: counted, never fatal
            counts.damaged.append(f"{path}: GPU events malformed ({error.__class__.__name__})")
    finite = [f for f in found if all(math.isfinite(v) for v in (
        f.wall_s, f.gpu_s, f.idle_gpu_s, f.throttled_gpu_s, f.energy_j or 0.0))]
    if len(finite) < len(found):
        counts.damaged.append(f"{path}: GPU events malformed (a figure is not a finite number)")
    return max(finite, key=lambda f: f.wall_s, default=None)


def _owners(record: Record) -> list[tuple[GpuBlock, int | None]]:
    """Each block's task: the one the sidecar names (the ``-N`` of the kickstart it wrapped),
    else the one whose record it follows. A sidecar around pegasus-cluster names none."""
    by_derivation = {str(i.get("derivation")): index
                     for index, i in enumerate(record.invocations)}
    found = []
    for block in record.gpu_blocks:
        context = block.events["kickstart.inv.gpu.environment"].get("context")
        named = context.get("derivation") if isinstance(context, dict) else None
        found.append((block, by_derivation.get(str(named), block.owner) if named is not None
                      else block.owner))
    return found


def _attribute(record: Record, job: str, rows: _Rows, counts: Counts,
               keep_timeline: bool) -> None:
    """Add one try's GPU blocks to the rows of the job, or of its tasks."""
    path, invocations = record.path, record.invocations
    if not record.clustered:  # every block covers the one job
        usage = rows.row(job, "", record, None, record.failed)
        figures = _figures(record.gpu_blocks, invocations, path, counts, keep_timeline)
        if figures:
            usage.figures.add(figures)
        return
    owners = _owners(record)
    inner = Figures()
    for index, invocation in enumerate(invocations):
        task = str(invocation.get("derivation") or f"task {index + 1}")
        usage = rows.row(job, task, record, invocation, _failed(invocation))
        figures = _figures([b for b, owner in owners if owner == index], [invocation],
                           path, counts, keep_timeline)
        if figures:
            usage.figures.add(figures)
            inner.add(figures)
    outer = _figures([b for b, owner in owners if owner is None], invocations, path,
                     counts, keep_timeline)
    if outer and inner.gpu_count:  # what the tasks' own blocks left uncovered
        rows.row(job, OUTSIDE_TASKS, record, None, record.failed).figures.add(
            outer.outside(inner))
    elif outer:  # only pegasus-cluster was wrapped: the job as a whole
        rows.row(job, "", record, None, record.failed).figures.add(outer)


def _collect_files(files: list[str], named: set[str],
                   keep_timelines: bool) -> tuple[_Rows, Counts, _Rows, Counts]:
    """The rows and counts of the kickstart records, and apart those of --events-file
    outputs (a try per run)."""
    rows, counts, event_rows, event_counts = _Rows(), Counts(), _Rows(), Counts()
    for path in files:
        record = load(path)
        if path in named and not record.invocations and not record.gpu_blocks and \
                not record.damaged and os.path.getsize(path):  # empty: killed before kickstart
            raise NotARecord(f"{path} is not a kickstart record (.out) or an --events-file "
                             "output")
        if record.events_file:
            event_counts.damaged.extend(record.damaged)
            for block in record.gpu_blocks or [None]:
                run = Record(path, gpu_blocks=[block] if block else [], events_file=True)
                _count(run, event_rows, event_counts, keep_timelines)
        else:
            _count(record, rows, counts, keep_timelines)
    return rows, counts, event_rows, event_counts


def _count(record: Record, rows: _Rows, counts: Counts, keep_timelines: bool) -> None:
    """One try: counted as pegasus-statistics counts, and its blocks attributed."""
    path = record.path
    job = job_name(path)
    where = os.path.dirname(path)  # a sub-workflow's jobs are its own
    counts.files += 1
    counts.failed_attempts += record.failed
    if not record.events_file:
        counts.damaged.extend(record.damaged)
    counts.jobs.add((where, job))
    compute = [i for i in record.invocations if not _is_data(i)]
    counts.task_tries += len(compute)
    counts.tasks.update((where, job, i.get("derivation")) for i in compute)
    if not record.gpu_blocks:
        counts.without_gpu_events += 1
    _attribute(record, job, rows, counts, keep_timelines)


def _merge(rows: _Rows, counts: Counts, more_rows: _Rows, more: Counts) -> None:
    for key, usage in more_rows.items():
        found = rows.get(key)
        if found is None:
            rows[key] = usage
        else:
            found.attempts += usage.attempts
            found.failed_attempts += usage.failed_attempts
            found.figures.add(usage.figures)
    counts.files += more.files
    counts.failed_attempts += more.failed_attempts
    counts.without_gpu_events += more.without_gpu_events
    counts.damaged.extend(more.damaged)
    counts.jobs |= more.jobs
    counts.tasks |= more.tasks
    counts.task_tries += more.task_tries


def collect(paths: Iterable[str], keep_timelines: bool = False) -> tuple[list[Usage], Counts]:
    """Every try's usage, by job (and task). A file named in ``paths`` (not found in a
    directory) that holds no record raises :class:`NotARecord`. A large run is read by a
    process per CPU, a chunk of records at a time, and their rows added up in order."""
    paths = list(paths)
    named = {path for path in paths if not os.path.isdir(path)}
    for path in named:  # a FIFO or a device: its read would block or never end (the walk
        if not os.path.isfile(path):  # takes regular files only, by their entries' type)
            raise NotARecord(f"{path} is not a regular file")
    files = list(find_records(paths))
    chunks = [files[start:start + CHUNK] for start in range(0, len(files), CHUNK)]
    workers = min(len(chunks), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count() or 1)
    rows, counts, event_rows, event_counts = _Rows(), Counts(), _Rows(), Counts()

    def merge(part: tuple[_Rows, Counts, _Rows, Counts]) -> None:
        _merge(rows, counts, part[0], part[1])
        _merge(event_rows, event_counts, part[2], part[3])
    if workers < 2:
        for chunk in chunks:
            merge(_collect_files(chunk, named, keep_timelines))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("fork")  # the parsed state is ready to use
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for part in pool.map(_collect_files, chunks, [named] * len(chunks),
                                 [keep_timelines] * len(chunks)):
                merge(part)
    if counts.files:  # the records say what was used; their runs' events add time lines
        counts.timelines = _finished(event_rows)
    else:
        rows, counts = event_rows, event_counts
    return _finished(rows), counts


def _finished(rows: _Rows) -> list[Usage]:
    for (directory, _, _), usage in rows.items():
        usage.directory = directory
    return sorted((u for u in rows.values() if u.figures.gpu_count),
                  key=lambda u: (u.job, u.task, u.directory))


def label(usage: Usage) -> str:
    return f"{usage.job}/{usage.task}" if usage.task else usage.job


ROLLUP_FIELDS = ("jobs", "rows", "gpu_hours", "idle_gpu_hours", "throttled_gpu_hours",
                 "energy_j", "energy_kwh", "peak_mem_bytes")


def rollup(rows: list[Usage], by: str) -> list[dict[str, Any]]:
    """GPU-hours, idle and throttled GPU-hours, energy and peak memory per transformation or
    per site (``by``), full precision."""
    groups: dict[str, list[Usage]] = {}
    for usage in rows:
        groups.setdefault(getattr(usage, by), []).append(usage)
    result = []
    for name, members in sorted(groups.items()):
        energy = [u.figures.energy_j for u in members if u.figures.energy_j is not None]
        memory = [u.figures.peaks["mem_bytes"] for u in members
                  if "mem_bytes" in u.figures.peaks]
        result.append({
            by: name, "jobs": len({(u.directory, u.job) for u in members}),
            "rows": len(members),
            "gpu_hours": sum(u.gpu_hours for u in members),
            "idle_gpu_hours": sum(u.idle_gpu_hours for u in members),
            "throttled_gpu_hours": sum(u.figures.throttled_gpu_s for u in members) / 3600,
            "energy_j": sum(energy) if energy else None,
            "energy_kwh": sum(energy) / 3.6e6 if energy else None,
            "peak_mem_bytes": max(memory) if memory else None})
    return result


def totals(rows: list[Usage], counts: Counts) -> dict[str, Any]:
    energy = [u.figures.energy_j for u in rows if u.figures.energy_j is not None]
    compute = [u for u in rows if not u.data_job]
    jobs, tasks = len(counts.jobs), len(counts.tasks)
    return {
        # as pegasus-statistics counts them: a try is a record, a retry a try after the first
        "jobs": jobs, "tries": counts.files, "retries": counts.files - jobs,
        "tasks": tasks, "task_tries": counts.task_tries,
        "task_retries": counts.task_tries - tasks,
        "jobs_with_gpu_events": len({(u.directory, u.job) for u in rows}),
        "records": counts.files,
        "failed_attempts": counts.failed_attempts,
        "records_without_gpu_events": counts.without_gpu_events,
        "damaged_records": len(counts.damaged), "damaged": counts.damaged[:20],
        "gpu_hours": sum(u.gpu_hours for u in rows),
        "idle_gpu_hours": sum(u.idle_gpu_hours for u in rows),
        "data_jobs_gpu_hours": sum(u.gpu_hours for u in rows if u.data_job),
        "throttled_gpu_hours": sum(u.figures.throttled_gpu_s for u in rows) / 3600,
        "energy_j": sum(energy) if energy else None,
        "energy_kwh": sum(energy) / 3.6e6 if energy else None,
        "top_by_gpu_hours": [label(u) for u in sorted(compute, key=lambda u: -u.gpu_hours)
                             [:TOP]],
        "top_by_idle_gpu_hours": [label(u) for u in sorted(compute,
                                                           key=lambda u: -u.idle_gpu_hours)
                                  [:TOP] if u.idle_gpu_hours > 0],
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value}"


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**30:.1f}"


def _kwh(value: float | None) -> str:
    return "-" if value is None else f"{value:.5f}"


def _columns(rows: list[list[str]], left: int = 1) -> list[str]:
    """Aligned lines: the first ``left`` columns and the last to the left, numbers right."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    last = len(widths) - 1
    lines = ["  ".join(cell.ljust(w) if i < left or i == last else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _usage_table(rows: list[Usage], first: str) -> list[str]:
    table = [[first, "tries", "gpus", "wall s", "GPU-h", "energy kWh", "avg gpu%",
              "peak gpu%", "peak mem GiB", "idle GPU-h", "notes"]]
    for usage in rows:
        figures, notes = usage.figures, []
        if usage.failed_attempts:
            notes.append(f"{usage.failed_attempts} failed")
        if figures.throttled_samples:
            notes.append(f"throttled in {figures.throttled_samples} samples")
        notes.extend(sorted(figures.errors)[:2])
        table.append([label(usage), str(usage.attempts), str(figures.gpu_count),
                      _fmt(figures.wall_s), f"{usage.gpu_hours:.4f}", _kwh(usage.energy_kwh),
                      _fmt(figures.mean("gpu")), _fmt(figures.peaks.get("gpu")),
                      _gib(figures.peaks.get("mem_bytes")), f"{usage.idle_gpu_hours:.4f}",
                      "; ".join(notes)])
    return _columns(table)


def _rollup_table(groups: list[dict[str, Any]], by: str) -> list[str]:
    table = [[by, "jobs", "GPU-h", "idle GPU-h", "throttled GPU-h", "energy kWh",
              "peak mem GiB"]]
    table += [[g[by], str(g["jobs"]), f"{g['gpu_hours']:.4f}", f"{g['idle_gpu_hours']:.4f}",
               f"{g['throttled_gpu_hours']:.4f}", _kwh(g["energy_kwh"]),
               _gib(g["peak_mem_bytes"])] for g in groups]
    return _columns(table)


def render_table(rows: list[Usage], summary: dict[str, Any]) -> str:
    compute = [u for u in rows if not u.data_job]
    data = [u for u in rows if u.data_job]
    lines = _usage_table(compute, "job") if compute else ["No compute job has GPU events."]
    if data:
        lines += ["", "Pegasus' data jobs (create-dir, transfers, cleanup, registration) "
                  "under the sidecar:", *_usage_table(data, "data job")]
    for by in ("transformation", "site"):
        lines += ["", *_rollup_table(rollup(rows, by), by)]
    energy = summary["energy_kwh"]
    lines += [
        "",
        f"Workflow: {summary['jobs_with_gpu_events']} jobs with GPU events, "
        f"{summary['gpu_hours']:.4f} GPU-hours ({summary['idle_gpu_hours']:.4f} idle), "
        + (f"{summary['energy_j']:.0f} J = {energy:.5f} kWh" if energy is not None
           else "energy unknown"),
        f"Jobs: {summary['jobs']} ({summary['tries']} tries, {summary['retries']} retries); "
        f"tasks: {summary['tasks']} ({summary['task_tries']} tries, "
        f"{summary['task_retries']} retries), as pegasus-statistics counts them",
        f"Records: {summary['records']} read, {summary['failed_attempts']} failed attempts, "
        f"{summary['records_without_gpu_events']} without GPU events, "
        f"{summary['damaged_records']} damaged",
        f"Top by GPU-hours: {', '.join(summary['top_by_gpu_hours']) or '-'}",
        f"Top by idle GPU time: {', '.join(summary['top_by_idle_gpu_hours']) or '-'}",
    ]
    return "\n".join(lines)


def write_json(rows: list[Usage], summary: dict[str, Any]) -> None:
    """``jobs`` a row a line, written as they go (100,000 rows at once held 700 MB), then
    ``by_transformation``, ``by_site`` and ``totals``."""
    write, encode = sys.stdout.write, json.JSONEncoder().encode
    write('{"jobs": [')
    for start in range(0, len(rows), 1000):
        write(("\n  " if start == 0 else ",\n  ")
              + ",\n  ".join(encode(usage.row()) for usage in rows[start:start + 1000]))
    write("\n],\n")
    rest = {"by_transformation": rollup(rows, "transformation"), "by_site": rollup(rows, "site"),
            "totals": summary}
    write(json.dumps(rest, indent=2)[1:].lstrip("\n") + "\n")


def write_csv(rows: list[Usage]) -> None:
    """One table: a line per row (``level`` job), then per transformation and per site."""
    fields = ["level", *Usage("").row(), "jobs", "rows"]
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows({"level": "job", **usage.row()} for usage in rows)
    for by in ("transformation", "site"):
        writer.writerows({"level": by, **group} for group in rollup(rows, by))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pegasus-kickstart-gpu report",
        description="GPU usage of a workflow run: per job (per task for clustered jobs) GPU-hours, "
        "energy, utilisation, peak memory, idle and throttled GPU time and errors; the same per "
        "transformation and per site; workflow totals, the top jobs, and jobs, tries and tasks "
        "as pegasus-statistics counts them.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a submit directory, .out files, or --events-file outputs")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the run's summary to "
                        "FILE.png and the busiest jobs' time lines to FILE-timelines.png "
                        "(needs matplotlib: pip install 'pegasus-globus[plot]')")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    missing = [p for p in args.paths if not os.path.exists(p)]
    if missing:
        print(f"pegasus-kickstart-gpu report: no such file or directory: {missing[0]}",
              file=sys.stderr)
        return 2
    if args.plot and not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
        print(f"pegasus-kickstart-gpu report: --plot {args.plot}: no such directory "
              f"{os.path.dirname(os.path.abspath(args.plot))}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("pegasus-kickstart-gpu report: --plot needs matplotlib: "
                  "pip install 'pegasus-globus[plot]'", file=sys.stderr)
            return 2
    try:
        rows, counts = collect(args.paths, keep_timelines=bool(args.plot))
    except NotARecord as error:
        print(f"pegasus-kickstart-gpu report: {error}", file=sys.stderr)
        return 2
    summary = totals(rows, counts)
    try:
        _write(args.format, rows, summary)
    except BrokenPipeError:  # `report ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    if args.plot:
        from .plot import draw

        for written in draw(rows, summary, args.plot, counts.timelines):
            print(f"figure: {written}", file=sys.stderr)
    return 0


def _write(output_format: str, rows: list[Usage], summary: dict[str, Any]) -> None:
    if output_format == "json":
        write_json(rows, summary)
    elif output_format == "csv":
        write_csv(rows)
    else:
        print(render_table(rows, summary))
    sys.stdout.flush()
