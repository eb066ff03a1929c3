"""``pegasus-kickstart-gpu report PATH...``: GPU usage of a workflow run, per job and in total.

PATH is a Pegasus submit directory (its jobs' ``.out`` files and retries ``.out.NNN`` are
found), single ``.out`` files, or ``--events-file`` outputs (JSON lines). Each job's attempts
are added up; failed attempts, records without GPU events and damaged records are counted.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

from .nvml import THROTTLE_MASK
from .record_reader import GPU_KEYS, Record, read_record

_ATTEMPT = re.compile(r"\.out(\.\d+)?$")
# in a submit directory, what else ends in .out: DAGMan's logs and POST scripts' output
_NOT_A_RECORD = re.compile(r"\.(dagman|lib|post)\.out(\.\d+)?$")
TOP = 5


@dataclass
class JobUsage:
    """One job's GPU use over all its attempts. Times in seconds, energy in joules."""

    job: str
    attempts: int = 0
    failed_attempts: int = 0
    gpus: list[str] = field(default_factory=list)
    gpu_count: int = 0
    wall_s: float = 0.0
    gpu_hours: float = 0.0
    energy_j: float | None = None
    avg_gpu_util: float | None = None
    peak_gpu_util: float | None = None
    avg_mem_util: float | None = None
    peak_mem_util: float | None = None
    peak_mem_bytes: int | None = None
    idle_gpu_hours: float = 0.0
    throttled_samples: int = 0
    errors: list[str] = field(default_factory=list)
    timeline: dict[str, list[tuple[float, Any, Any, Any]]] = field(default_factory=dict,
                                                                    repr=False)

    @property
    def energy_kwh(self) -> float | None:
        return None if self.energy_j is None else self.energy_j / 3.6e6


@dataclass
class Counts:
    files: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    without_gpu_events: int = 0
    damaged: list[str] = field(default_factory=list)


def find_records(paths: Iterable[str]) -> Iterator[str]:
    for path in paths:
        if os.path.isdir(path):
            for directory, _, files in os.walk(path):
                for name in sorted(files):
                    if _ATTEMPT.search(name) and not _NOT_A_RECORD.search(name):
                        yield os.path.join(directory, name)
        else:
            yield path


def job_name(path: str) -> str:
    return _ATTEMPT.sub("", os.path.basename(path)) or os.path.basename(path)


def _events_file(path: str) -> Record:
    """An --events-file output, read as one attempt."""
    record = Record(path)
    found: dict[str, Any] = {"kickstart.inv.gpu.stats": []}
    try:
        with open(path) as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    event = json.loads(line)
                except ValueError:
                    record.damaged.append(f"{path}, line {number}: not JSON")
                    continue
                name = event.get("event")
                if name == "kickstart.inv.gpu.stats":
                    found[name].append(event)
                elif name in GPU_KEYS:
                    found[name] = event
    except OSError as error:
        record.damaged.append(f"{path}: {error.strerror}")
    if set(found) == set(GPU_KEYS):
        record.multipart.extend({k: v} for k, v in found.items())
    return record


def _is_events_file(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(9) == b'{"event":'
    except OSError:
        return False


def _attempt(usage: JobUsage, record: Record, keep_timeline: bool) -> None:
    gpu = record.gpu or {}
    environment = gpu["kickstart.inv.gpu.environment"]
    stats = gpu["kickstart.inv.gpu.stats"]
    maxima = gpu["kickstart.inv.gpu.stats.max"].get("devices", [])
    devices = environment.get("devices", [])
    usage.gpus = sorted(set(usage.gpus) | {f"{d.get('name')} {d.get('uuid') or d.get('id')}"
                                           for d in devices})
    usage.gpu_count = max(usage.gpu_count, len(devices))
    # GPUs are held for the whole wrapped run: the sidecar's span, else the job's duration
    span = gpu["kickstart.inv.gpu.stats.max"].get("duration")
    durations = [i.get("duration") for i in record.invocations
                 if isinstance(i.get("duration"), (int, float))]
    times = [s["timestamp"] for s in stats] or [environment.get("timestamp", 0)]
    wall = float(span if span is not None else sum(durations) if durations
                 else max(times) - min(times))
    usage.wall_s += wall
    usage.gpu_hours += wall * len(devices) / 3600
    energy = [d.get("energy_used") for d in maxima if d.get("energy_used") is not None]
    if energy:
        usage.energy_j = (usage.energy_j or 0.0) + sum(energy) / 1000
    for key, peak_key, device_key, peak_device_key in (
            ("avg_gpu_util", "peak_gpu_util", "avg_gpu_utilization", "max_gpu_usage"),
            ("avg_mem_util", "peak_mem_util", "avg_mem_utilization", "max_mem_utilization")):
        means = [d[device_key] for d in maxima if d.get(device_key) is not None]
        if means:  # attempts weigh by their wall time
            previous = getattr(usage, key)
            mean = sum(means) / len(means)
            weight = usage.wall_s - wall
            setattr(usage, key, round(mean if previous is None or usage.wall_s == 0 else
                                      (previous * weight + mean * wall) / usage.wall_s, 2))
        peaks = [d[peak_device_key] for d in maxima if d.get(peak_device_key) is not None]
        if peaks:
            setattr(usage, peak_key, max([*peaks, getattr(usage, peak_key) or 0]))
    memory = [d["max_mem_usage"] for d in maxima if d.get("max_mem_usage") is not None]
    if memory:
        usage.peak_mem_bytes = max([*memory, usage.peak_mem_bytes or 0])
    # counted over every sample by the sidecar; records before it did, from the kept samples
    counted = all("throttled_samples" in d for d in maxima) and bool(maxima)
    if counted:
        usage.throttled_samples += sum(d["throttled_samples"] for d in maxima)
    by_device: dict[Any, list[dict[str, Any]]] = {}
    for sample in stats:
        by_device.setdefault(sample.get("uuid") or sample.get("id"), []).append(sample)
        if not counted and (sample.get("throttle_reasons") or 0) & THROTTLE_MASK:
            usage.throttled_samples += 1
        for field_name, reason in (sample.get("errors") or {}).items():
            if reason != "NOT_SUPPORTED":
                usage.errors.append(f"{field_name}: {reason}")
    idle = [d["idle_fraction"] for d in maxima if d.get("idle_fraction") is not None]
    idle_counted = bool(idle) and len(idle) == len(maxima)  # by the sidecar, over every sample
    if idle_counted:
        usage.idle_gpu_hours += sum(idle) * wall / 3600
    for device, samples in by_device.items():
        samples.sort(key=lambda s: s["timestamp"])
        if not idle_counted:  # records before that: from the kept samples
            usage.idle_gpu_hours += _idle_fraction(samples) * wall / 3600
        if keep_timeline:  # labelled as nvidia-smi and the events name GPUs: by id
            usage.timeline[f"GPU {samples[0].get('id', device)}"] = [
                (s["timestamp"], s.get("gpu_utilization"), s.get("mem_usage"),
                 s.get("power_usage")) for s in samples]
    usage.errors = sorted(set(usage.errors + list(environment.get("problems", []))))


def _idle_fraction(samples: list[dict[str, Any]]) -> float:
    """The share of the sampled time a GPU showed 0 % utilisation (by samples if no time)."""
    known = [s for s in samples if s.get("gpu_utilization") is not None]
    if not known:
        return 0.0
    span = known[-1]["timestamp"] - known[0]["timestamp"]
    if span <= 0:
        return sum(s["gpu_utilization"] == 0 for s in known) / len(known)
    idle = sum(after["timestamp"] - before["timestamp"] for before, after in zip(known, known[1:])
               if before["gpu_utilization"] == 0)
    return idle / span


class NotARecord(ValueError):
    """A file named on the command line is neither a record nor an events file."""


def collect(paths: Iterable[str], keep_timelines: bool = False) -> tuple[list[JobUsage], Counts]:
    """Every attempt's usage, by job. A file named in ``paths`` (not found in a directory)
    that holds no record raises :class:`NotARecord`."""
    paths = list(paths)
    named = {path for path in paths if not os.path.isdir(path)}
    jobs: dict[str, JobUsage] = {}
    counts = Counts()
    for path in find_records(paths):
        counts.files += 1
        record = _events_file(path) if _is_events_file(path) else read_record(path)
        if path in named and not record.invocations and record.gpu is None:
            raise NotARecord(f"{path} is not a kickstart record (.out) or an --events-file "
                             "output")
        counts.damaged.extend(record.damaged)
        counts.attempts += 1
        counts.failed_attempts += int(record.failed)
        usage = jobs.setdefault(job_name(path), JobUsage(job_name(path)))
        usage.attempts += 1
        usage.failed_attempts += int(record.failed)
        if record.gpu is None:
            counts.without_gpu_events += 1
            continue
        try:
            _attempt(usage, record, keep_timelines)
        except (KeyError, TypeError, ValueError) as error:  # a malformed block: count, go on
            counts.damaged.append(f"{path}: GPU events malformed ({error.__class__.__name__})")
    return sorted((j for j in jobs.values() if j.gpu_count), key=lambda j: j.job), counts


def totals(jobs: list[JobUsage], counts: Counts) -> dict[str, Any]:
    energy = [j.energy_j for j in jobs if j.energy_j is not None]
    return {
        "jobs_with_gpu_events": len(jobs), "records": counts.files,
        "failed_attempts": counts.failed_attempts,
        "records_without_gpu_events": counts.without_gpu_events,
        "damaged_records": len(counts.damaged), "damaged": counts.damaged[:20],
        "gpu_hours": sum(j.gpu_hours for j in jobs),
        "idle_gpu_hours": sum(j.idle_gpu_hours for j in jobs),
        "energy_j": sum(energy) if energy else None,
        "energy_kwh": sum(energy) / 3.6e6 if energy else None,
        "top_by_gpu_hours": [j.job for j in sorted(jobs, key=lambda j: -j.gpu_hours)[:TOP]],
        "top_by_idle_gpu_hours": [j.job for j in sorted(jobs, key=lambda j: -j.idle_gpu_hours)
                                  [:TOP] if j.idle_gpu_hours > 0],
    }


def _row(job: JobUsage) -> dict[str, Any]:
    """A job's figures at full precision (json and csv; the table rounds for reading)."""
    row = {k: v for k, v in asdict(job).items() if k != "timeline"}
    row.update(gpus="; ".join(job.gpus), errors="; ".join(job.errors),
               energy_kwh=job.energy_kwh)
    return row


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}{unit}"
    return f"{value}{unit}"


def render_table(jobs: list[JobUsage], summary: dict[str, Any]) -> str:
    header = ["job", "tries", "gpus", "wall s", "GPU-h", "energy kWh", "avg gpu%",
              "peak gpu%", "peak mem GiB", "idle GPU-h", "notes"]
    rows = [header]
    for job in jobs:
        notes = []
        if job.failed_attempts:
            notes.append(f"{job.failed_attempts} failed")
        if job.throttled_samples:
            notes.append(f"throttled in {job.throttled_samples} samples")
        notes.extend(job.errors[:2])
        rows.append([job.job, str(job.attempts), str(job.gpu_count), _fmt(job.wall_s),
                     f"{job.gpu_hours:.4f}", "-" if job.energy_kwh is None else
                     f"{job.energy_kwh:.5f}", _fmt(job.avg_gpu_util), _fmt(job.peak_gpu_util),
                     "-" if job.peak_mem_bytes is None else f"{job.peak_mem_bytes / 2**30:.1f}",
                     f"{job.idle_gpu_hours:.4f}", "; ".join(notes)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i in (0, 10) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    energy = summary["energy_kwh"]
    lines += [
        "",
        f"Workflow: {summary['jobs_with_gpu_events']} jobs with GPU events, "
        f"{summary['gpu_hours']:.4f} GPU-hours ({summary['idle_gpu_hours']:.4f} idle), "
        + (f"{summary['energy_j']:.0f} J = {energy:.5f} kWh" if energy is not None
           else "energy unknown"),
        f"Records: {summary['records']} read, {summary['failed_attempts']} failed attempts, "
        f"{summary['records_without_gpu_events']} without GPU events, "
        f"{summary['damaged_records']} damaged",
        f"Top by GPU-hours: {', '.join(summary['top_by_gpu_hours']) or '-'}",
        f"Top by idle GPU time: {', '.join(summary['top_by_idle_gpu_hours']) or '-'}",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pegasus-kickstart-gpu report",
        description="GPU usage of a workflow run: per job GPU-hours, energy, utilisation, peak "
        "memory, idle GPU time and errors; workflow totals and the top jobs.")
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
        jobs, counts = collect(args.paths, keep_timelines=bool(args.plot))
    except NotARecord as error:
        print(f"pegasus-kickstart-gpu report: {error}", file=sys.stderr)
        return 2
    summary = totals(jobs, counts)
    if args.format == "json":
        print(json.dumps({"jobs": [_row(j) for j in jobs], "totals": summary}, indent=2))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(_row(JobUsage("x")).keys()))
        writer.writeheader()
        writer.writerows(_row(j) for j in jobs)
    else:
        print(render_table(jobs, summary))
    if args.plot:
        from .plot import draw

        for written in draw(jobs, summary, args.plot):
            print(f"figure: {written}", file=sys.stderr)
    return 0
