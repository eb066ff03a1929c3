"""What GPU blocks add up to: one row per job, or per task of a clustered job.

A block's figures are additive (seconds, GPU-seconds, joules) or peaks. Where a sidecar around
``pegasus-cluster`` and sidecars around its tasks both wrote blocks, the tasks' figures are
taken from their own blocks and the outer block only adds what no task covered (``pegasus-
cluster`` starting, between tasks): every second and joule is counted once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .nvml import THROTTLE_MASK

OUTSIDE_TASKS = "(outside tasks)"  # the task name of a cluster's time no task's block covers
TimelinePoint = tuple[float, Any, Any, Any]  # timestamp, GPU %, memory bytes, power mW


@dataclass
class Figures:
    """One block's figures, or several added up. Seconds, joules and bytes."""

    wall_s: float = 0.0
    gpu_s: float = 0.0  # wall time times the GPUs held
    idle_gpu_s: float = 0.0  # GPU-seconds at 0 % utilisation
    throttled_gpu_s: float = 0.0  # GPU-seconds with a clock held down (power, heat)
    throttled_samples: int = 0
    energy_j: float | None = None
    gpus: set[str] = field(default_factory=set)
    gpu_count: int = 0
    util_s: dict[str, float] = field(default_factory=dict)  # mean % times wall, to average
    peaks: dict[str, float] = field(default_factory=dict)  # peak GPU %, memory %, bytes
    errors: set[str] = field(default_factory=set)
    timeline: dict[str, list[TimelinePoint]] = field(default_factory=dict)

    def add(self, other: Figures) -> None:
        self.wall_s += other.wall_s
        self.gpu_s += other.gpu_s
        self.idle_gpu_s += other.idle_gpu_s
        self.throttled_gpu_s += other.throttled_gpu_s
        self.throttled_samples += other.throttled_samples
        if other.energy_j is not None:
            self.energy_j = (self.energy_j or 0.0) + other.energy_j
        self.gpus |= other.gpus
        self.gpu_count = max(self.gpu_count, other.gpu_count)
        for key, value in other.util_s.items():
            self.util_s[key] = self.util_s.get(key, 0.0) + value
        for key, value in other.peaks.items():
            self.peaks[key] = max(self.peaks.get(key, value), value)
        self.errors |= other.errors
        self.timeline.update(other.timeline)

    def outside(self, inner: Figures) -> Figures:
        """What this (outer) block covered that the inner blocks did not: additive figures
        less theirs, never below zero. Means and peaks of that remainder are unknown."""
        return Figures(
            wall_s=max(0.0, self.wall_s - inner.wall_s),
            gpu_s=max(0.0, self.gpu_s - inner.gpu_s),
            idle_gpu_s=max(0.0, self.idle_gpu_s - inner.idle_gpu_s),
            throttled_gpu_s=max(0.0, self.throttled_gpu_s - inner.throttled_gpu_s),
            throttled_samples=max(0, self.throttled_samples - inner.throttled_samples),
            energy_j=None if self.energy_j is None else max(0.0, self.energy_j
                                                             - (inner.energy_j or 0.0)),
            gpus=set(self.gpus), gpu_count=self.gpu_count, errors=set(self.errors))

    def mean(self, key: str) -> float | None:
        return None if key not in self.util_s or self.wall_s <= 0 else \
            self.util_s[key] / self.wall_s


def block_figures(events: dict[str, Any], durations: list[float],
                  keep_timeline: bool = False) -> Figures:
    """A block's figures. GPUs are held for the sidecar's whole run: its span, else the
    covered job's duration, else the samples' span. Raises KeyError, TypeError or ValueError
    on a malformed block."""
    environment = events["kickstart.inv.gpu.environment"]
    stats = events["kickstart.inv.gpu.stats"]
    summary = events["kickstart.inv.gpu.stats.max"]
    maxima = summary.get("devices", [])
    devices = environment.get("devices", [])
    span = summary.get("duration")
    times = [s["timestamp"] for s in stats] or [environment.get("timestamp", 0)]
    wall = float(span if span is not None else sum(durations) if durations
                 else max(times) - min(times))
    figures = Figures(wall_s=wall, gpu_s=wall * len(devices), gpu_count=len(devices),
                      gpus={f"{d.get('name')} {d.get('uuid') or d.get('id')}" for d in devices})
    energy = _numbers(d.get("energy_used") for d in maxima)
    if energy:
        figures.energy_j = sum(energy) / 1000  # mJ
    for key, device_key in (("gpu", "avg_gpu_utilization"), ("mem", "avg_mem_utilization")):
        means = _numbers(d.get(device_key) for d in maxima)
        if means:
            figures.util_s[key] = sum(means) / len(means) * wall
    for key, device_key in (("gpu", "max_gpu_usage"), ("mem", "max_mem_utilization"),
                            ("mem_bytes", "max_mem_usage")):
        peaks = _numbers(d.get(device_key) for d in maxima)
        if peaks:
            figures.peaks[key] = max(peaks)
    by_device: dict[Any, list[dict[str, Any]]] = {}
    for sample in stats:
        by_device.setdefault(sample.get("uuid") or sample.get("id"), []).append(sample)
        for field_name, reason in (sample.get("errors") or {}).items():
            if reason != "NOT_SUPPORTED":
                figures.errors.add(f"{field_name}: {reason}")
    figures.errors.update(environment.get("problems", []))
    # counted by the sidecar over every sample; for records before that, from the kept samples
    if maxima and all("throttled_samples" in d for d in maxima):
        figures.throttled_samples = sum(d["throttled_samples"] for d in maxima)
        figures.throttled_gpu_s = sum(d["throttled_samples"] / d["samples"] * wall
                                      for d in maxima if d.get("samples"))
    else:
        for samples in by_device.values():
            throttled = sum(bool((s.get("throttle_reasons") or 0) & THROTTLE_MASK)
                            for s in samples)
            figures.throttled_samples += throttled
            figures.throttled_gpu_s += throttled / len(samples) * wall
    idle = [d["idle_fraction"] for d in maxima if d.get("idle_fraction") is not None]
    if idle and len(idle) == len(maxima):
        figures.idle_gpu_s = sum(idle) * wall
    for device, samples in by_device.items():
        samples.sort(key=lambda s: s["timestamp"])
        if not (idle and len(idle) == len(maxima)):
            figures.idle_gpu_s += _idle_fraction(samples) * wall
        if keep_timeline:  # labelled as nvidia-smi and the events name GPUs: by id
            figures.timeline[f"GPU {samples[0].get('id', device)}"] = [
                (s["timestamp"], s.get("gpu_utilization"), s.get("mem_usage"),
                 s.get("power_usage")) for s in samples]
    return figures


def _numbers(values: Iterable[Any]) -> list[float]:
    """The values given (None for none); a block where one is no number is damaged."""
    found = [v for v in values if v is not None]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in found):
        raise TypeError("a figure is not a number")
    return found


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


@dataclass
class Usage:
    """One row: a job (or one task of a clustered job) over all its tries."""

    job: str
    task: str = ""  # the clustered task's Pegasus job id; empty for a job of one task
    transformation: str = ""
    site: str = ""
    data_job: bool = False  # Pegasus' own: create-dir, transfers, cleanup, registration
    directory: str = field(default="", repr=False)  # where its records are
    attempts: int = 0
    failed_attempts: int = 0
    figures: Figures = field(default_factory=Figures)

    @property
    def gpu_hours(self) -> float:
        return self.figures.gpu_s / 3600

    @property
    def idle_gpu_hours(self) -> float:
        return self.figures.idle_gpu_s / 3600

    @property
    def energy_kwh(self) -> float | None:
        energy = self.figures.energy_j
        return None if energy is None else energy / 3.6e6

    def row(self) -> dict[str, Any]:
        """The row at full precision (json, csv; the table rounds for reading)."""
        figures = self.figures
        return {
            "job": self.job, "task": self.task, "transformation": self.transformation,
            "site": self.site, "data_job": self.data_job, "attempts": self.attempts,
            "failed_attempts": self.failed_attempts, "gpus": "; ".join(sorted(figures.gpus)),
            "gpu_count": figures.gpu_count, "wall_s": figures.wall_s,
            "gpu_hours": self.gpu_hours, "idle_gpu_hours": self.idle_gpu_hours,
            "throttled_gpu_hours": figures.throttled_gpu_s / 3600,
            "throttled_samples": figures.throttled_samples, "energy_j": figures.energy_j,
            "energy_kwh": self.energy_kwh, "avg_gpu_util": figures.mean("gpu"),
            "peak_gpu_util": figures.peaks.get("gpu"), "avg_mem_util": figures.mean("mem"),
            "peak_mem_util": figures.peaks.get("mem"),
            "peak_mem_bytes": figures.peaks.get("mem_bytes"),
            "errors": "; ".join(sorted(figures.errors)),
        }
