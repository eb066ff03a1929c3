"""Read kickstart ``.out`` files as Pegasus does, fast enough for big runs.

Records are found the way ``Pegasus.tools.kickstart_parser`` finds them: an invocation record
starts at ``- invocation:``, a multipart block at the ``---------------pegasus-multipart``
marker, and only lines starting with a space or ``-`` belong to a record. From an invocation
the fields Pegasus takes are read (``transformation``, ``derivation``, ``hostname``,
``resource``, and ``mainjob``'s ``start``, ``duration`` and status); multipart entries come
back as Pegasus returns them. GPU lines are read as the JSON they are; other multipart blocks
are read as YAML.
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
_WANTED = {("transformation",): "transformation", ("derivation",): "derivation",
           ("hostname",): "hostname", ("resource",): "resource",
           ("mainjob", "start"): "start", ("mainjob", "duration"): "duration",
           ("mainjob", "status", "raw"): "raw",
           ("mainjob", "status", "regular_exitcode"): "exitcode",
           ("mainjob", "status", "signalled_signal"): "signal"}
_KEY = re.compile(r"^(\s*)(- )?([A-Za-z0-9_.\-]+):(?:\s+(.*))?$")
_GPU_LINE = re.compile(r"^- (kickstart\.inv\.gpu\.[a-z.]+): (.*)$")


@dataclass
class Record:
    """What one ``.out`` file holds."""

    path: str
    invocations: list[dict[str, Any]] = field(default_factory=list)
    multipart: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)

    @property
    def gpu(self) -> dict[str, Any] | None:
        """The GPU block's three events (the last block, if a file has several)."""
        found: dict[str, Any] = {}
        for entry in self.multipart:
            found.update({k: v for k, v in entry.items() if k in GPU_KEYS})
        return found if set(found) == set(GPU_KEYS) else None

    @property
    def failed(self) -> bool:
        return any(inv.get("raw") not in (0, None) for inv in self.invocations)


def _scalar(text: str) -> Any:
    """A YAML plain or quoted scalar, typed as YAML would type it."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text in ("null", "~", ""):
        return None
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _invocation(lines: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {"invocation": True}
    stack: list[tuple[int, str]] = []
    for line in lines[1:]:
        match = _KEY.match(line)
        if not match:
            continue
        indent = len(match.group(1)) + (2 if match.group(2) else 0)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(key for _, key in stack), match.group(3))
        if path in _WANTED and match.group(4) is not None:
            found[_WANTED[path]] = _scalar(match.group(4))
        stack.append((indent, match.group(3)))
    return found


def _multipart(lines: list[str], path: str, damaged: list[str]) -> list[dict[str, Any]]:
    entries = []
    for line in lines:
        match = _GPU_LINE.match(line.rstrip("\n"))
        if not match:
            break
        try:
            entries.append({match.group(1): json.loads(match.group(2))})
        except ValueError:
            damaged.append(f"{path}: a GPU line is not valid JSON")
            return []
    else:
        return entries
    import yaml  # another tool's block: read it as Pegasus does

    try:
        loaded = yaml.safe_load("".join(lines))
    except yaml.YAMLError as error:
        damaged.append(f"{path}: a multipart block is not YAML ({str(error).splitlines()[0]})")
        return []
    if isinstance(loaded, dict):
        loaded = [loaded]
    return [entry for entry in loaded or [] if isinstance(entry, dict)]


def read_record(path: str | Path) -> Record:
    """Parse one ``.out`` file; problems are noted in ``damaged``, never raised."""
    record = Record(str(path))
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as error:
        record.damaged.append(f"{path}: {error.strerror}")
        return record
    kind, lines = None, []

    def close() -> None:
        if kind == "invocation":
            record.invocations.append(_invocation(lines))
        elif kind == "multipart" and lines:
            record.multipart.extend(_multipart(lines, str(path), record.damaged))

    for line in text.splitlines(keepends=True):
        if line.startswith("- invocation:"):
            close()
            kind, lines = "invocation", [line]
        elif line.startswith(MARKER):
            close()
            kind, lines = "multipart", []
        elif line.startswith(("[cluster-", "[seqexec-")):
            close()
            kind, lines = None, []
        elif kind and line[:1] in (" ", "-", "\n"):
            lines.append(line)
    close()
    return record
