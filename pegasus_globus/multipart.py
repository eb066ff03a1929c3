"""Files in ``$PEGASUS_MULTIPART_DIR``, the directory whose files PegasusLite appends to the
job's kickstart record (``ls | sort``, one ``---------------pegasus-multipart`` block each).

Every writer there names its file after the time in seconds (stock pegasus-transfer:
``<seconds>-transfer``), so two writers in one job within the same second would replace each
other's file and the record would lose the first one's data. Files here are published whole
(written aside under a hidden name, which ``ls`` skips) and never replace an existing one.
"""

from __future__ import annotations

import os
import time


def publish(directory: str, suffix: str, text: str) -> str:
    """Write ``text`` to a new file ``<seconds>-<pid>-<suffix>`` in ``directory``, completely
    or not at all, never replacing a file already there; returns its path."""
    return publish_as(directory, f"{int(time.time())}-{os.getpid()}-{suffix}", text)


def publish_as(directory: str, name: str, text: str) -> str:
    """Write ``text`` to ``directory/name`` completely or not at all; where that name is
    taken, to ``name.1``, ``name.2``, ...; returns the path written."""
    fd, aside = _create_aside(directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return _link_new(aside, os.path.join(directory, name))
    finally:
        os.unlink(aside)


def adopt(source_directory: str, directory: str) -> None:
    """Move every file a child wrote in its private ``source_directory`` into ``directory``
    under a name no other file there has (see :func:`publish_as`)."""
    for name in sorted(os.listdir(source_directory)):
        path = os.path.join(source_directory, name)
        if os.path.isfile(path) and not name.startswith("."):
            _link_new(path, os.path.join(directory, name))
    import shutil

    shutil.rmtree(source_directory, ignore_errors=True)


def _create_aside(directory: str) -> tuple[int, str]:
    """A new hidden file in ``directory``, mode 0600, and its path: tempfile.mkstemp's work
    without tempfile's imports (random, hashlib: 4 ms of every GPU job's record)."""
    stem = os.path.join(directory, f".multipart-{os.getpid()}-{time.monotonic_ns()}")
    number = 0
    while True:
        path = f"{stem}-{number}.tmp"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            number += 1


def _link_new(path: str, wanted: str) -> str:
    """Hard-link ``path`` as ``wanted`` or the first free ``wanted.N`` (link(2) never
    replaces, so two writers racing for a name both keep their file)."""
    candidate, number = wanted, 0
    while True:
        try:
            os.link(path, candidate)
            return candidate
        except FileExistsError:
            number += 1
            candidate = f"{wanted}.{number}"
