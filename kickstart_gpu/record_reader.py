"""Read kickstart ``.out`` files as Pegasus does, fast enough for big runs.

Records are found the way ``Pegasus.tools.kickstart_parser`` finds them: an invocation record
starts at ``- invocation:``, a multipart block at the ``---------------pegasus-multipart``
marker, and only lines starting with a space or ``-`` belong to a record. From an invocation
the fields Pegasus takes are read (``transformation``, ``derivation``, ``hostname``,
``resource``, and ``mainjob``'s ``start``, ``duration`` and status); multipart entries come
back as Pegasus returns them. GPU lines are read as the JSON they are; other multipart blocks
are read as YAML.

Each GPU block is also given its owner: the invocation it follows, unless a clustered job's
``[cluster-task ...]`` or ``[cluster-summary ...]`` line came between. A sidecar around one
task (or around kickstart, or inside it) writes its block right after that task's record; a
sidecar around ``pegasus-cluster`` writes after the summary line, covering every task.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .block_writer import MARKER

GPU_KEYS = ("kickstart.inv.gpu.environment", "kickstart.inv.gpu.stats",
            "kickstart.inv.gpu.stats.max")
# one regular expression a field, over an invocation's whole text, each anchored on a newline
# (a per-line parse of the ~200 lines of each record was two thirds of report's time on a large
# submit directory, and `^` with re.M is several times slower to scan for than `\n`)
_TOP_FIELDS = re.compile(r"\n  (transformation|derivation|hostname|resource):[ \t]+(.*)")
_MAINJOB = re.compile(r"\n  mainjob:[ \t]*((?:\n(?:    .*)?)*)")
_MAINJOB_FIELDS = re.compile(r"\n    (start|duration):[ \t]+(.*)")
_STATUS = re.compile(r"\n    status:[ \t]*((?:\n(?:      .*)?)*)")
_STATUS_FIELDS = re.compile(r"\n      (raw|regular_exitcode|signalled_signal):[ \t]+(.*)")
_STATUS_NAMES = {"regular_exitcode": "exitcode", "signalled_signal": "signal"}
_SECTION_STARTS = r"(?:- invocation:|" + re.escape(MARKER) + r"|\[cluster-|\[seqexec-)"
_SECTION = re.compile(r"\n" + _SECTION_STARTS)
_FIRST_SECTION = re.compile(_SECTION_STARTS)
# no two parts can take the same digits: linear on a long unquoted value
_NUMBER = re.compile(r"[-+]?(?:[\d_]+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")
_GPU_LINE = re.compile(r"^- (kickstart\.inv\.gpu\.[a-z.]+): (.*)$")


@dataclass
class GpuBlock:
    """One sidecar's three events, and the invocation (by index) its run covered."""

    events: dict[str, Any]
    owner: int | None  # None: it covers a whole clustered job (or a record with no invocation)


@dataclass
class Record:
    """What one ``.out`` file holds."""

    path: str
    invocations: list[dict[str, Any]] = field(default_factory=list)
    multipart: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    gpu_blocks: list[GpuBlock] = field(default_factory=list)
    clustered: bool = False  # pegasus-cluster's task or summary lines are in it
    events_file: bool = False  # an --events-file output, not a kickstart record

    @property
    def failed(self) -> bool:
        return any(inv.get("raw") not in (0, None) for inv in self.invocations)


def _scalar(text: str) -> Any:
    """A YAML plain or quoted scalar, typed as YAML would type it."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        if "\\" not in text:  # nothing escaped: as it stands (most names; json.loads is slow)
            return text[1:-1]
        try:  # YAML's escapes, as JSON has them
            return json.loads(text)
        except ValueError:
            return text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text in ("null", "~", ""):
        return None
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    if not _NUMBER.match(text):  # a date or a name: no exceptions to pay for
        return text
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _invocation(text: str) -> dict[str, Any]:
    found: dict[str, Any] = {"invocation": True}
    mainjob = _MAINJOB.search(text)
    # kickstart writes the four fields before mainjob: the rest (most of the record) is read
    # for them only if one is missing there
    head = text[:mainjob.start()] if mainjob else text
    fields = _TOP_FIELDS.findall(head)
    if len({key for key, _ in fields}) < 4 and mainjob:
        fields += _TOP_FIELDS.findall(text, mainjob.end())
    for key, value in fields:
        found[key] = _scalar(value)
    if mainjob:
        for key, value in _MAINJOB_FIELDS.findall(mainjob.group(1)):
            found[key] = _scalar(value)
        status = _STATUS.search(mainjob.group(1))
        if status:
            for key, value in _STATUS_FIELDS.findall(status.group(1)):
                found[_STATUS_NAMES.get(key, key)] = _scalar(value)
    return found


def _multipart(lines: list[str], path: str, damaged: list[str]) -> list[dict[str, Any]]:
    entries = []
    for line in lines:
        match = _GPU_LINE.match(line.rstrip("\n"))
        if not match:
            break
        try:
            entries.append({match.group(1): json.loads(match.group(2))})
        except (ValueError, RecursionError):
            damaged.append(f"{path}: a GPU line is not valid JSON")
            return []
    else:
        return entries
    import yaml  # another tool's block: read it as Pegasus does

    try:
        loaded = yaml.safe_load("".join(lines))
    except (yaml.YAMLError, RecursionError) as error:
        damaged.append(f"{path}: a multipart block is not YAML "
                       f"({(str(error).splitlines() or [type(error).__name__])[0]})")
        return []
    if isinstance(loaded, dict):
        loaded = [loaded]
    if not isinstance(loaded, list):
        return []
    return [entry for entry in loaded if isinstance(entry, dict)]


def _record_lines(text: str) -> list[str]:
    """The lines Pegasus' parser keeps: those starting with a space, a dash or nothing."""
    return [line for line in text.splitlines(keepends=True) if line[:1] in (" ", "-", "\n")]


def read_record(path: str | Path) -> Record:
    """Parse one ``.out`` file; problems are noted in ``damaged``, never raised."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as error:
        return Record(str(path), damaged=[f"{path}: {error.strerror}"])
    return parse_record(text, str(path))


def parse_record(text: str, path: str) -> Record:
    """Parse a ``.out`` file's text (``path`` names it in problems)."""
    record = Record(path)
    owner: int | None = None
    starts = [match.start() + 1 for match in _SECTION.finditer(text)]
    if _FIRST_SECTION.match(text):
        starts.insert(0, 0)
    for start, end in zip(starts, [*starts[1:], len(text)]):
        section = text[start:end]
        if section.startswith("- invocation:"):
            record.invocations.append(_invocation(section))
            owner = len(record.invocations) - 1
        elif section.startswith(MARKER):
            lines = _record_lines(section[len(MARKER):].partition("\n")[2])
            entries = _multipart(lines, path, record.damaged) if lines else []
            record.multipart.extend(entries)
            events = {key: value for entry in entries for key, value in entry.items()
                      if key in GPU_KEYS}
            if len(events) == len(GPU_KEYS):
                record.gpu_blocks.append(GpuBlock(events, owner))
        else:  # a clustered job's task or summary line: what follows covers no one task
            record.clustered, owner = True, None
    return record
