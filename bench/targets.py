"""Issue 25's targets, judged on the unrounded figures (a ratio printed as 0.150 may be either)."""

from __future__ import annotations


def at_most(value: float, target: float, unit: str = "") -> str:
    """``(target <= 0.15: holds)`` or ``(target <= 0.15: MISSED)`` for ``value``."""
    return f"(target <= {target:g}{unit}: {'holds' if value <= target else 'MISSED'})"


def at_least(value: float, target: float, unit: str = "") -> str:
    """``(target >= 0.8: holds)`` or ``(target >= 0.8: MISSED)`` for ``value``."""
    return f"(target >= {target:g}{unit}: {'holds' if value >= target else 'MISSED'})"
