"""The GPU block appended to the kickstart record, in the form Pegasus' tools read.

::

    ---------------pegasus-multipart
    - kickstart.inv.gpu.environment: {...}
    - kickstart.inv.gpu.stats: [{...}, ...]
    - kickstart.inv.gpu.stats.max: {...}

Each value is compact JSON, which is YAML: every line starts with ``-``, as
``Pegasus.tools.kickstart_parser`` requires. Pegasus' tools search the whole ``.out`` text for
markers (``Pegasus.exitcode``: ``raw: <n>``, ``integrity_error: ``, ``<status``,
``[cluster-task``, ``[cluster-summary``, ``[seqexec-...``; the parser: ``- invocation:``,
``<invocation``, ``<?xml``, the multipart marker), so none may appear whatever the strings
(environment, GPU names, /proc): compact JSON puts no space after a colon outside strings, and
inside strings the one character that would complete a marker is written as a JSON ``\\u``
escape, which JSON and YAML decode back to the same text.
"""

from __future__ import annotations

import os
import stat
import sys

from .jsonlite import dumps, dumps_finite

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

MARKER = "---------------pegasus-multipart"
# about the most the block adds to a record per GPU, and in all, whatever the duration and
# interval. Pegasus' exitcode (DAGMan's POST script, run for every job) and monitord parse the
# whole .out with PyYAML's pure-Python loader: 32 KB per GPU made both 3 to 55 times slower on
# an 8-GPU record (bench/record_size.py). So the record keeps the inventory, the maxima and
# the samples that fit, the last always (a 1-GPU job keeps about 2, an 8-GPU job 1); the full
# time series goes to --events-file or --mon-url.
BYTES_PER_GPU = 2_500
BYTES_IN_ALL = 12_000
# what the PyYAML loader pays for is scalars (~50 us each), not bytes: so the record's samples
# and maxima leave out what the record says elsewhere, and what the --events-file and
# --mon-url events keep: each GPU's uuid (in the inventory, joined by id), its energy counter
# and clock-event reasons (counted over every sample in the maxima: energy_used,
# throttled_samples)
LEFT_TO_THE_EVENTS = frozenset({"uuid", "energy_consumption", "throttle_reasons"})
# a character completing a marker Pegasus' tools look for anywhere in a .out file; outside
# JSON strings none can match ("[" then a letter is only true/false/null, "-" only a number)
_MARKERS = (r"(?<=raw):(?= )|(?<=integrity_error):(?= )|<|\[(?=cluster-|seqexec-)"
            r"|-(?= invocation:)|-(?=-*pegasus-multipart)")
# what every match of _MARKERS contains: a block without any of these needs no `re` (4 ms)
_MARKER_HINTS = ("raw: ", "integrity_error: ", "<", "[cluster-", "[seqexec-", "- invocation:",
                 "-pegasus-multipart")


def fit_samples(samples: list[list[dict[str, Any]]], budget: int) -> list[list[dict[str, Any]]]:
    """Evenly spaced samples (the last always kept, the first while two fit) whose compact
    JSON fits in ``budget`` bytes; at least the last.

    :param samples: one list of per-GPU stats events per sampling time, oldest first
    """
    def size(kept: list[list[dict[str, Any]]]) -> int:
        return sum(len(dumps(e)) + 1
                   for sample in kept for e in sample)

    total = size(samples)
    keep = len(samples)
    kept = samples
    while total > budget and keep > 1:
        keep = max(1, min(keep - 1, int(keep * budget / total)))
        last = len(samples) - 1
        picks = sorted({last - round(i * last / max(1, keep - 1)) for i in range(keep)})
        kept = [samples[i] for i in picks]
        total = size(kept)
    return kept


def for_the_record(event: dict[str, Any]) -> dict[str, Any]:
    """A stats event, or a maxima device, without the fields the record leaves to the events."""
    return {key: value for key, value in event.items() if key not in LEFT_TO_THE_EVENTS}


def render_entries(events: Mapping[str, Any]) -> str:
    """The block's YAML list, without the marker."""
    lines = []
    for name, value in events.items():
        try:
            text = dumps_finite(value)
        except ValueError:  # YAML reads JSON's NaN and Infinity as strings: no reading, null
            text = dumps_finite(_finite(value))
        if any(hint in text for hint in _MARKER_HINTS):
            import re

            text = re.sub(_MARKERS, lambda match: f"\\u{ord(match.group()):04x}", text)
        lines.append(f"- {name}: {text}")
    return "\n".join(lines) + "\n"


def _finite(value: Any) -> Any:
    """``value`` with every NaN and infinity made None."""
    if isinstance(value, float):
        return value if value - value == 0 else None  # inf - inf and NaN - NaN are NaN
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_record(events: Mapping[str, Any], output: str | None,
                 environ: Mapping[str, str]) -> str:
    """Write the block where it belongs; returns where it went.

    ``output``: a path; else a new file in ``$PEGASUS_MULTIPART_DIR`` (PegasusLite prints the
    marker before each file there); else standard output, after the job's own output, which
    is the record when the sidecar runs in front of kickstart (the launcher). Inside
    kickstart (its child), standard output is the job's output that kickstart captures: the
    block then goes to ``pegasus-kickstart-gpu-<pid>.yml`` in the working directory instead,
    and a line on standard error says so.
    """
    entries = render_entries(events)
    if output:
        _append_whole(output, f"{MARKER}\n{entries}")
        return output
    # pegasus_globus.multipart (tempfile, shutil: 3 ms) only where a file is published
    directory = environ.get("PEGASUS_MULTIPART_DIR")
    if directory:
        from pegasus_globus import multipart

        os.makedirs(directory, exist_ok=True)
        return multipart.publish(directory, "gpu", entries)
    if inside_kickstart():
        from pegasus_globus import multipart

        path = multipart.publish_as(os.getcwd(), f"pegasus-kickstart-gpu-{os.getpid()}.yml",
                                    f"{MARKER}\n{entries}")
        print(f"pegasus-kickstart-gpu: running inside pegasus-kickstart, whose standard output "
              f"is the job's: the GPU block is in {path} (put the sidecar in front of kickstart "
              f"with the gridstart.launcher profile, or give --output)", file=sys.stderr)
        return path
    if sys.stdout is None:
        raise OSError("standard output is closed: give --output PATH for the block")
    sys.stdout.flush()
    sys.stdout.write(f"\n{MARKER}\n{entries}")
    sys.stdout.flush()
    return "standard output"


def _append_whole(path: str, text: str) -> None:
    """Append ``text`` to ``path`` completely or not at all: a write that fails (a full disk)
    leaves the file as it was, and no file where there was none."""
    existed = os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    before = os.fstat(fd)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        if stat.S_ISREG(before.st_mode):  # not a pipe or a device
            os.ftruncate(fd, before.st_size)
            if not existed:
                os.unlink(path)
        raise
    finally:
        os.close(fd)


def inside_kickstart() -> bool:
    """Whether this process is pegasus-kickstart's child (its comm, cut at 15 characters)."""
    try:
        with open(f"/proc/{os.getppid()}/comm") as comm:
            return comm.read().strip() == "pegasus-kicksta"
    except OSError:
        return False
