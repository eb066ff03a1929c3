"""Figures for ``report --plot`` (matplotlib, an optional extra)."""

from __future__ import annotations

import os
from typing import Any

TIMELINE_JOBS = 6  # the busiest jobs by GPU-hours get a time line each
DPI = 150


def draw(jobs: list[Any], summary: dict[str, Any], path: str,
         timelines: list[Any] = ()) -> list[str]:
    """Write the run's summary to ``path`` (per job, per transformation and per site) and job
    time lines beside it (from ``jobs``, and ``timelines``: rows of --events-file runs given
    with the records); returns the paths. Both are :class:`~.usage.Usage` rows."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    written = [_summary(plt, jobs, summary, path)]
    # a record keeps few samples (8 GPUs: only the last): time lines need --events-file series
    series = [j for j in [*jobs, *timelines]
              if any(len(s) >= 3 for s in j.figures.timeline.values())]
    busiest = sorted(series, key=lambda j: -j.gpu_hours)[:TIMELINE_JOBS]
    if busiest:
        stem, extension = os.path.splitext(path)
        written.append(_timelines(plt, busiest, f"{stem}-timelines{extension or '.png'}"))
    return written


def _summary(plt: Any, jobs: list[Any], summary: dict[str, Any], path: str) -> str:
    from .report import label, rollup

    shown = sorted(jobs, key=lambda j: -j.gpu_hours)[:20]
    groups = {by: rollup(jobs, by) for by in ("transformation", "site")}
    bars = max(len(shown), *(len(g) for g in groups.values()))
    figure, ((hours, energy), (by_transformation, by_site)) = plt.subplots(
        2, 2, figsize=(11, 0.7 * bars + 4.4))
    _hours(hours, [label(j) for j in shown], [j.gpu_hours for j in shown],
           [j.idle_gpu_hours for j in shown], "GPU-hours per job")
    energy.barh([label(j) for j in shown], [j.energy_kwh or 0 for j in shown], color="#5b9a4a")
    energy.set_xlabel("energy (kWh)")  # the unit of the report's table
    energy.invert_yaxis()
    for axis, by in ((by_transformation, "transformation"), (by_site, "site")):
        _hours(axis, [g[by] for g in groups[by]], [g["gpu_hours"] for g in groups[by]],
               [g["idle_gpu_hours"] for g in groups[by]], f"GPU-hours per {by}")
    total = summary.get("energy_kwh")
    figure.suptitle(f"GPU use: {summary['gpu_hours']:.3f} GPU-h, "
                    f"{summary['idle_gpu_hours']:.3f} idle"
                    + (f", {total:.3g} kWh" if total else ""), fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _hours(axis: Any, names: list[str], hours: list[float], idle: list[float],
           title: str) -> None:
    busy = [max(0.0, total - idle_hours) for total, idle_hours in zip(hours, idle)]
    axis.barh(names, busy, color="#2a7ab9", label="busy")
    axis.barh(names, idle, left=busy, color="#e8a33d", label="allocated, idle")
    axis.set_xlabel(title)
    axis.invert_yaxis()
    axis.legend(loc="lower right", fontsize=8)


def _timelines(plt: Any, jobs: list[Any], path: str) -> str:
    figure, axes = plt.subplots(len(jobs), 3, figsize=(12, 2.1 * len(jobs)), squeeze=False)
    for row, job in zip(axes, jobs):
        for device, samples in job.figures.timeline.items():
            start = samples[0][0]
            times = [s[0] - start for s in samples]
            label = str(device)
            row[0].plot(times, [s[1] for s in samples], label=label)
            row[1].plot(times, [(s[2] or 0) / 2 ** 30 for s in samples], label=label)
            row[2].plot(times, [(s[3] or 0) / 1000 for s in samples], label=label)
        for axis, title in zip(row, ("GPU utilisation %", "memory GiB", "power W")):
            axis.set_title(f"{job.job}{'/' + job.task if job.task else ''}: {title}",
                           fontsize=8)
            axis.tick_params(labelsize=7)
        row[0].set_ylim(0, 105)
        row[0].legend(fontsize=6)
    for axis in axes[-1]:
        axis.set_xlabel("seconds since start", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
