"""Intervals, dates and transfer items, in the forms the Globus Timer CLI accepts."""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

MIN_INTERVAL = 60
MAX_INTERVAL = 3650 * 86400  # ten years: beyond, dates overflow; no schedule needs more
_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_INTERVAL = re.compile(r"(\d+)\s*([wdhms])")
SYNC_LEVELS = ("exists", "size", "mtime", "checksum")


def parse_interval(text: str) -> int:
    """Seconds from ``3600``, ``1d``, ``8h``, ``1h30m``, ``2w`` or ``1d 12h``; at least 60.

    :raises ValueError: saying what is accepted
    """
    text = str(text).strip().lower()
    if text.isdigit():
        seconds = int(text)
    else:
        parts = _INTERVAL.findall(text)
        if not parts or _INTERVAL.sub("", text).strip():
            raise ValueError(f"'{text}' is not an interval: use seconds or forms like 1d, 8h, "
                             "1h30m, 2w")
        seconds = sum(int(number) * _UNITS[unit] for number, unit in parts)
    if seconds < MIN_INTERVAL:
        raise ValueError(f"interval '{text}' is {seconds} s: Globus Timers need at least "
                         f"{MIN_INTERVAL} s")
    if seconds > MAX_INTERVAL:
        raise ValueError(f"interval '{text}' is more than {MAX_INTERVAL // 86400}d: use a "
                         "shorter one")
    return seconds


def end_condition(interval: int, start: dt.datetime | None, runs: int | None,
                  stop: dt.datetime | None) -> dict[str, object] | None:
    """The one ``end`` a Globus timer takes, for the legacy CLI's two stop options.

    The seed's timer "stops running as soon as one stop condition is met", so with both the
    earlier is kept: run N is at ``start + (N - 1) x interval`` (start: now when not given).
    """
    if runs is not None and (stop is None or (start or dt.datetime.now(dt.timezone.utc))
                             + dt.timedelta(seconds=interval * (runs - 1)) <= stop):
        return {"condition": "iterations", "count": runs}
    if stop is not None:
        return {"condition": "time", "datetime": utc_iso(stop)}
    return None


# The Timers service documents no limit on a timer's name; 128 characters is what Globus keeps
# its other names to (bookmarks, flow titles) and what Transfer allows a task's label, which
# by default carries the timer's name.
MAX_NAME = 128
MAX_LABEL = 128


def check_text(text: str, flag: str, limit: int) -> str:
    """A name or label: 1 to ``limit`` characters, on one line (never echoed when too long).

    :raises ValueError: saying what was wrong and the limit
    """
    if not text.strip():
        raise ValueError(f"{flag} is empty: give one")
    if len(text) > limit:
        raise ValueError(f"{flag} is {len(text)} characters long: give at most {limit}")
    if any(not character.isprintable() for character in text):
        raise ValueError(f"{flag} contains a control character (a newline, say): give one line "
                         "of text")
    return text


def check_path(path: str, what: str = "path") -> str:
    """A path on a collection: absolute (``/data/x``, ``/~/x``), no NUL.

    :raises ValueError: saying what a Globus path looks like
    """
    if "\0" in path:
        raise ValueError(f"{what} {path!r} contains a NUL byte")
    if not path.startswith(("/", "~/")) and path != "~":
        raise ValueError(f"{what} '{path}' is relative: Globus paths start with / "
                         "(or /~/ for your home directory on the collection)")
    return path


def shell_expanded_home(path: str) -> str | None:
    """A warning when ``path`` looks like ``~/...`` expanded by the caller's shell."""
    import os

    home = os.environ.get("HOME", "").rstrip("/")
    if home and path.startswith(home + "/"):
        rest = path[len(home) + 1:]
        return (f"warning: '{path}' starts with your local home directory, as if the shell "
                f"expanded '~': for your home on the collection write /~/{rest} "
                f"(or quote '~/{rest}')")
    return None


def format_interval(seconds: float) -> str:
    seconds = int(seconds)
    parts = []
    for unit, size in _UNITS.items():
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def parse_datetime(text: str) -> dt.datetime:
    """A date (``2026-11-21``) or date-time (``2026-11-21T12:34:56[+01:00]``), aware.

    Without a zone it is local time, as the legacy CLI took it.
    """
    text = str(text).strip()
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text}' is not a date or date-time: use YYYY-MM-DD or "
                         "YYYY-MM-DDTHH:MM:SS, optionally with a zone like +00:00") from None
    return value if value.tzinfo else value.astimezone()  # naive: local time


def utc_iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def parse_bool(text: str | bool, what: str = "value") -> bool:
    if isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"{what} '{text}' is not true or false")


def parse_sync_level(text: str) -> str:
    lowered = str(text).strip().lower()
    numeric = {"0": "exists", "1": "size", "2": "mtime", "3": "checksum"}
    if lowered in numeric:
        return numeric[lowered]
    if lowered not in SYNC_LEVELS:
        raise ValueError(f"sync level '{text}': use one of {', '.join(SYNC_LEVELS)} (or 0-3)")
    return lowered


def read_items_file(path: str | Path) -> list[tuple[str, str, bool]]:
    """The legacy CLI's items file: ``source, destination, true|false`` lines, ``#`` comments.

    :raises ValueError: naming the file, line and problem
    """
    items = []
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ValueError(f"cannot read items file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"items file {path} is not text (UTF-8): byte {error.start} "
                         "cannot be read") from None
    rows = csv.reader(text.splitlines())
    number = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as error:
            raise ValueError(f"{path}, line {number + 1}: {error}") from None
        number += 1
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        values = [value.strip() for value in row]
        if len(values) != 3:
            raise ValueError(f"{path}, line {number}: expected 'source, destination, "
                             f"true|false', found {len(values)} value(s)")
        try:
            recursive = parse_bool(values[2], "recursive")
            check_path(values[0], "source")
            check_path(values[1], "destination")
        except ValueError as error:
            raise ValueError(f"{path}, line {number}: {error}") from None
        items.append((values[0], values[1], recursive))
    if not items:
        raise ValueError(f"items file {path} lists no items")
    return items
