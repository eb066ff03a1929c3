"""Pegasus' integrity checks for the files the bridge moves, by Pegasus' own pegasus-integrity.

pegasus-transfer's JSON asks for two checks per entry (the planner sets them while
``pegasus.integrity.checking`` is on, its default):

- ``generate_checksum``: put the file's sha256 in the job's kickstart record
  (``pegasus-integrity --generate-fullstat-yaml``, which appends to ``$KICKSTART_INTEGRITY_DATA``),
  once per LFN, as stock pegasus-transfer does.
- ``verify_checksum_remote``: check the file as it arrived against the sha256 that PegasusLite
  recorded for it (the ``*.meta`` files in the working directory, which the planner hands the
  stage-out job): a local destination directly, a go:// one pulled back over HTTPS first.
  Stock pegasus-transfer cannot pull a go:// file back and skips the check with "Unable to pull
  file from go to local file. Skipping integrity check."; the bridge does it.

A check that fails, or that cannot run (no pegasus-integrity), fails the transfer, as in stock
pegasus-transfer.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from pathlib import Path

log = logging.getLogger("pegasus_globus")


def pegasus_tool(name: str) -> str | None:
    """One of Pegasus' commands: ``$PEGASUS_HOME/bin`` first, as Pegasus' own tools look."""
    home = os.environ.get("PEGASUS_HOME")
    if home and os.access(Path(home) / "bin" / name, os.X_OK):
        return str(Path(home) / "bin" / name)
    return shutil.which(name)


def wants(entry: dict, check: str) -> bool:
    """Whether a pegasus-transfer entry asks for ``check`` (true, or "true" as a string)."""
    value = entry.get(check, False)
    return value is True or str(value).lower() == "true"


class IntegrityChecks:
    """The checks of one pegasus-transfer run; thread-safe."""

    def __init__(self) -> None:
        self._generated: set[str] = set()
        self._lock = threading.Lock()

    def generate(self, lfn: str, path: Path) -> str | None:
        """Record ``path``'s checksum as ``lfn`` in the kickstart record; an error or None."""
        with self._lock:
            if lfn in self._generated:
                return None
            self._generated.add(lfn)
        return self._run(lfn, path, f"--generate-fullstat-yaml={lfn}={path}")

    def verify(self, lfn: str, path: Path, shown_as: str) -> str | None:
        """Check ``path`` (``shown_as`` in messages) against the checksum recorded for ``lfn``;
        an error or None."""
        error = self._run(lfn, path, f"--verify={lfn}={path}")
        if error is None:
            log.info("%s: sha256 matches the one recorded for %s", shown_as, lfn)
            return None
        return f"{shown_as}: the integrity check of {lfn} failed: {error}"

    @staticmethod
    def _run(lfn: str, path: Path, argument: str) -> str | None:
        if not lfn:
            return "the transfer has no lfn to check it by"
        tool = pegasus_tool("pegasus-integrity")
        if tool is None:
            return ("pegasus-integrity not found: set PEGASUS_HOME or put Pegasus' bin on PATH")
        result = subprocess.run([tool, argument], capture_output=True, text=True)
        if result.returncode == 0:
            return None
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines()]
        return next((line for line in reversed(lines) if line), f"exit {result.returncode}")
