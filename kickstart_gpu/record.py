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

import json
import os
import re
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

MARKER = "---------------pegasus-multipart"
# a character completing a marker Pegasus' tools look for anywhere in a .out file; outside
# JSON strings none can match ("[" then a letter is only true/false/null, "-" only a number)
_MARKERS = re.compile(r"(?<=raw):(?= )|(?<=integrity_error):(?= )|<|\[(?=cluster-|seqexec-)"
                      r"|-(?= invocation:)|-(?=-*pegasus-multipart)")


def render_entries(events: Mapping[str, Any]) -> str:
    """The block's YAML list, without the marker."""
    lines = []
    for name, value in events.items():
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=False,
                          default=str)
        text = _MARKERS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
        lines.append(f"- {name}: {text}")
    return "\n".join(lines) + "\n"


def write_record(events: Mapping[str, Any], output: str | None,
                 environ: Mapping[str, str]) -> str:
    """Write the block where it belongs; returns where it went.

    ``output``: a path; else a new file in ``$PEGASUS_MULTIPART_DIR`` (PegasusLite prints the
    marker before each file there); else standard output, after the job's own output.
    """
    entries = render_entries(events)
    if output:
        with open(output, "a") as handle:
            handle.write(f"{MARKER}\n{entries}")
        return output
    directory = environ.get("PEGASUS_MULTIPART_DIR")
    if directory:
        import tempfile

        os.makedirs(directory, exist_ok=True)
        # complete or absent: written aside, then renamed into the directory PegasusLite reads
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".gpu-", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(entries)
        final = os.path.join(directory, f"{int(time.time())}-{os.getpid()}-gpu")
        os.replace(temporary, final)
        return final
    sys.stdout.flush()
    sys.stdout.write(f"\n{MARKER}\n{entries}")
    sys.stdout.flush()
    return "standard output"
