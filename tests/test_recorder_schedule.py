"""The trace recorder's schedule (``kickstart_gpu.record_trace.record``): every interval start
to start; a sample slower than the interval delays the next, and the beats it let go by are
skipped, not made up with samples back to back (README, monitor.next_beat). On a clock of its
own, so no test races the machine."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from kickstart_gpu import record_trace
from kickstart_gpu.nvml import Nvml
from kickstart_gpu.replay import TraceLibrary
from kickstart_gpu.trace_file import load_trace
from tests.test_kickstart_gpu import TRACE


def sample_starts(monkeypatch, slow: int, seconds: float, interval: float,
                  job_ends: float) -> list[float]:
    """When each sample began, where sample number ``slow`` takes ``seconds`` and the others
    1 ms, for a job that ends ``job_ends`` s after the first sample began."""
    now, starts = [0.0], []

    class Clock:  # record_trace's time module
        @staticmethod
        def monotonic() -> float:
            return now[0]

    class Job:
        pid = os.getpid()

        def wait(self, timeout: float) -> int:
            if now[0] + timeout >= job_ends:
                now[0] = max(now[0], job_ends)
                return 0
            now[0] += timeout
            raise subprocess.TimeoutExpired("job", timeout)

    class OneSlowSample(record_trace.Recorder):
        def sample(self) -> dict[str, Any]:
            starts.append(now[0])
            now[0] += seconds if len(starts) == slow + 1 else 0.001
            return super().sample()

    class Output:
        def begin(self, header: dict[str, Any]) -> None:
            pass

        def add(self, sample: dict[str, Any]) -> None:
            pass

    monkeypatch.setattr(record_trace, "time", Clock)
    monkeypatch.setattr(record_trace, "Recorder", OneSlowSample)
    record_trace.record(Nvml(TraceLibrary(load_trace(TRACE))), Job(), 2, interval, Output(),
                        lambda devices: "")
    return starts


def test_after_a_slow_first_sample_no_two_samples_are_closer_than_the_interval(monkeypatch):
    """The first sample taking 1.05 s at a 0.1 s interval (NVML waking up) let beats 1 to 10
    go by. Whatever follows, no two samples but the exit's may be closer than the interval,
    and the job's remaining second still gets a sample every 0.1 s (12 in all, as after a slow
    third sample). Before: a sample at once at 1.05 s, made up for the beats let go by, then
    beat 11 at 1.1 s, 0.05 s later."""
    for slow in (2, 0):  # the third sample (held before), then the first
        starts = sample_starts(monkeypatch, slow, 1.05, 0.1, 2.05)
        regular = starts[:-1]  # the last is the exit's, taken when the job ended
        gaps = [later - earlier for earlier, later in zip(regular, regular[1:])]
        assert min(gaps) >= 0.1 - 1e-9, (slow, starts)
        assert len(starts) == 12, (slow, starts)


def test_the_recorder_skips_the_beats_a_slow_sample_let_go_by(monkeypatch):
    """As the sidecar does: after a first sample that took ten intervals, recording goes on at
    the next beat ahead, instead of making up the ten missed beats with samples back to back
    (a burst that a replay of the trace would play back as one)."""
    starts = sample_starts(monkeypatch, 0, 1.0, 0.1, 1.45)
    # the slow one, then every 0.1 s from the first beat after it, and the exit's
    assert starts == pytest.approx([0.0, 1.1, 1.2, 1.3, 1.4, 1.45])
