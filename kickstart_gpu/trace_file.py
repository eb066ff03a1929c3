"""GPU trace files (their format: :mod:`kickstart_gpu.replay`): found by path or by the name
of an installed one, read and checked. Apart from the replay itself, which the monitor thread
imports while the job runs: this much runs before the job starts.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

FORMAT = "pegasus-kickstart-gpu-trace"


class TraceError(ValueError):
    """The trace file is unusable; the message names the file and the problem."""


def trace_path(text: str) -> str:
    """A trace given by path, or by the name of one installed with the package
    (``a2x-a100-training``: ``<prefix>/share/kickstart-gpu/traces/<name>.json``)."""
    if os.path.exists(text) or "/" in text:
        return text
    import sys

    checkout = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    for prefix in (sys.prefix, checkout):  # the installed ones, then a source checkout's
        for name in (text, f"{text}.json"):
            candidate = os.path.join(prefix, "share", "kickstart-gpu", "traces", name)
            if os.path.isfile(candidate):
                return candidate
    return text


def load_trace(path: str | Path) -> dict[str, Any]:
    return parse_trace(read_trace(path), path)


def read_trace(path: str | Path) -> str:
    """The text of the trace file ``path``; TraceError where it cannot be read or does not say
    it is a trace (its format's name is nowhere in it). Cheap, for before the job starts:
    :func:`parse_trace` checks the rest."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise TraceError(f"cannot read GPU trace {path}: {error.strerror}") from None
    except ValueError:  # not UTF-8
        text = ""
    if f'"{FORMAT}"' not in text:
        raise TraceError(f"{path} is not a GPU trace (\"format\": \"{FORMAT}\" missing)")
    return text


def parse_trace(text: str, path: str | Path) -> dict[str, Any]:
    """The trace in ``text`` (read from ``path``); TraceError names what is wrong with it."""
    from .jsonlite import loads

    try:
        trace = loads(text)
    except ValueError as error:
        raise TraceError(f"GPU trace {path} is not valid JSON: {error}") from None
    except RecursionError:
        raise TraceError(f"GPU trace {path} is nested too deeply to be one") from None
    if not isinstance(trace, dict) or trace.get("format") != FORMAT:
        raise TraceError(f"{path} is not a GPU trace (\"format\": \"{FORMAT}\" missing)")
    devices, samples = trace.get("devices"), trace.get("samples")
    if not (isinstance(devices, list) and all(isinstance(d, dict) for d in devices)
            and isinstance(samples, list) and samples
            and all(_well_formed(sample, len(devices)) for sample in samples)):
        raise TraceError(f"GPU trace {path}: it needs a list of device objects, and samples "
                         "that each have a time \"t\" in seconds and one object per device")
    return trace


def _well_formed(sample: Any, devices: int) -> bool:
    if not isinstance(sample, dict) or type(sample.get("t")) not in (int, float):
        return False
    entries = sample.get("devices")
    return (isinstance(entries, list) and len(entries) == devices
            and all(isinstance(entry, dict) for entry in entries))


