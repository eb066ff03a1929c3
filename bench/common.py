"""What the benches share: their command lines, a clean end, and the verdicts on the targets.

A bench is run as ``python -m bench.NAME``; :func:`run` is its entry point.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import signal
import sys
import time
from typing import Any, Callable, NoReturn


class Arguments(argparse.ArgumentParser):
    """A bench's command line. A bad argument is one line (argparse's usage is on --help)."""

    def __init__(self, name: str, doc: str | None, **kwargs: Any) -> None:
        super().__init__(prog=f"python -m bench.{name}",
                         description=(doc or "").strip().splitlines()[0], **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def positive(text: str) -> int:
    """A whole number above 0, for ``type=`` (runs, rounds, files)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return value


def positive_number(text: str) -> float:
    """A number above 0, for ``type=`` (hours, seconds)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
    return value


def run(main: Callable[[], int | None]) -> NoReturn:
    """Run ``main`` and exit with its status. SIGINT (Ctrl-C), SIGTERM (a timeout, a cancelled
    CI job, `kill`) and SIGHUP first end the processes the bench started (SIGTERM, then SIGKILL
    after END_WAIT), then end ``main`` through its ``with`` and ``finally`` blocks, which stop
    its emulator and remove its scratch files; then the bench ends by that signal."""
    received: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        if not received:
            received.append(signum)
            _end_processes([p for p in descendants(os.getpid()) if p != os.getpid()])
            raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)
    try:
        status = main()
    except BrokenPipeError:  # its reader is gone (`| head`): nothing more to say, to anyone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    except KeyboardInterrupt:
        signum = received[0] if received else signal.SIGINT
        print(f"interrupted by {signal.Signals(signum).name}; its processes and files removed",
              file=sys.stderr)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
        status = 128 + signum  # only where the signal did not end us
    sys.exit(status or 0)


END_WAIT = 5.0  # seconds the bench's processes get to end on SIGTERM, before SIGKILL


def _end_processes(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + END_WAIT
    while (left := [p for p in pids if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except (OSError, IndexError):
        return False


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc, in pid order."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[parent].append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children[current])
    return sorted(found)


def at_most(value: float, target: float, unit: str = "") -> str:
    """``(target <= 0.15: holds)`` or ``(target <= 0.15: MISSED)`` for ``value``, judged on
    the unrounded figure (a ratio printed as 0.150 may be either)."""
    return f"(target <= {target:g}{unit}: {'holds' if value <= target else 'MISSED'})"


def at_least(value: float, target: float, unit: str = "") -> str:
    """``(target >= 0.8: holds)`` or ``(target >= 0.8: MISSED)`` for ``value``."""
    return f"(target >= {target:g}{unit}: {'holds' if value >= target else 'MISSED'})"
