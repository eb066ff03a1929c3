"""Files written completely or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _new_file_mode() -> int:
    umask = os.umask(0o022)  # umask has no getter: read and restore, at import, before threads
    os.umask(umask)
    return 0o666 & ~umask


NEW_FILE_MODE = _new_file_mode()  # what open() gives a new file (mkstemp's are 0600)
NAME_MAX = 255  # bytes of a file name: Linux' local and network file systems


def hidden_beside(target: str | Path, suffix: str) -> str:
    """``.<target's name>.<suffix>`` in the target's directory (a part file, say), the name
    cut short where the whole would pass NAME_MAX bytes: a target that fits never fails for
    its part file's name."""
    directory, name = os.path.split(target)
    while name and len(os.fsencode(f".{name}.{suffix}")) > NAME_MAX:
        name = name[:-1]
    return os.path.join(directory, f".{name}.{suffix}")


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` beside ``path``, then rename it there: a reader sees the old file or the
    whole new one, never half of it."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
