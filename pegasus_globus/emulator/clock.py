"""The emulator's clock: wall-clock time that may run faster than real time."""

from __future__ import annotations

import datetime as dt
import time


class ScaledClock:
    """Epoch seconds that advance ``scale`` times faster than real time.

    Timers are scheduled on this clock, so ``scale=60`` makes a 60 s interval pass in one
    real second. Tokens expire on real time, because clients compare their expiry with
    their own clock.
    """

    def __init__(self, scale: float = 1.0, not_before: float = 0.0) -> None:
        if scale <= 0:
            raise ValueError(f"time scale must be positive, got {scale}")
        self.scale = scale
        # after a restart, carry on from where the saved emulated time had got to
        self._origin = max(time.time(), not_before)
        self._origin_monotonic = time.monotonic()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._origin_monotonic) * self.scale

    def real_seconds(self, emulated_seconds: float) -> float:
        """How long ``emulated_seconds`` last in real time."""
        return emulated_seconds / self.scale


def iso(epoch: float | None) -> str | None:
    """ISO 8601 in UTC with an explicit offset, as Globus services print times."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def parse_iso(text: str) -> float:
    """Parse an ISO 8601 date-time; one without an offset is taken as UTC, as the services do."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()
