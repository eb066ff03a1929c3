"""Map a collection and a Globus path onto the emulator's files."""

from __future__ import annotations

import functools
import os
import stat
import uuid
from pathlib import Path

from .errors import ApiError


@functools.lru_cache(maxsize=1024)  # asked several times per file a task moves
def collection_id(text: str) -> str:
    """The canonical form of a collection id, or a Globus-style 400."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ApiError(400, "ClientError.BadRequest",
                       f"Invalid endpoint/collection id '{text}': not a UUID") from None


def resolve(base: Path, path: str) -> Path:
    """The local file behind ``path`` on the collection whose files live in ``base``.

    Absolute paths map below ``base`` and ``/~/`` is ``base`` itself. Anything that would
    leave it (``..`` past the top, or a symbolic link pointing out) is refused.
    """
    if "\0" in path:
        raise ApiError(400, "ClientError.BadRequest", "Path contains a NUL byte")
    if not path.startswith(("/", "~")):
        raise ApiError(400, "ClientError.BadRequest", f"Path '{path}' must be absolute")
    parts: list[str] = []
    for index, part in enumerate(path.split("/")):
        if part in ("", ".") or (index <= 1 and part == "~"):
            continue
        if part == "..":
            if not parts:
                raise ApiError(403, "ClientError.BadRequest.PathOutsideCollection",
                               f"Path '{path}' is outside the collection")
            parts.pop()
        else:
            parts.append(part)
    local = base.joinpath(*parts)
    if not inside(base, local):
        raise ApiError(403, "ClientError.BadRequest.PathOutsideCollection",
                       f"Path '{path}' is outside the collection")
    return local


def inside(base: Path, local: Path) -> bool:
    """Whether ``local``, symbolic links followed, is ``base`` or below it."""
    real_base = _real_root(str(base))
    real = _realpath(str(base), real_base, str(local))
    return real == real_base or real.startswith(real_base.rstrip(os.sep) + os.sep)


def _realpath(base: str, real_base: str, local: str) -> str:
    """``os.path.realpath(local)``, looking only at what lies below ``base`` when ``local``
    is spelled as a path under it: the root's own components are known (``real_base``), and
    a realpath stats each one of them again, several times per file a task moves."""
    if not local.startswith(base + os.sep):
        return os.path.realpath(local)
    parts = local[len(base) + 1:].split(os.sep)
    if ".." in parts:  # after a link, ".." leaves the link's target: realpath knows how
        return os.path.realpath(local)
    current = real_base
    for index, part in enumerate(parts):
        if part in ("", "."):
            continue
        candidate = os.path.join(current, part)
        try:
            mode = os.lstat(candidate).st_mode
        except OSError:  # not there (yet): the rest is taken as spelled, as realpath does
            return os.path.normpath(os.path.join(candidate, *parts[index + 1:]))
        current = os.path.realpath(candidate) if stat.S_ISLNK(mode) else candidate
    return current


@functools.lru_cache(maxsize=256)
def _real_root(base: str) -> str:
    """A collection's root, symbolic links followed: asked for twice per file a task moves,
    and a realpath costs a stat per component (half the emulator's time per file)."""
    return os.path.realpath(base)
