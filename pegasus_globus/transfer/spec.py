"""The JSON spec stock ``pegasus-transfer`` writes for ``pegasus-globus-online``.

Shapes (all with ``client_id``, ``transfer_at``, ``transfer_rt``, ``transfer_at_exp``):
transfer ``{"src_endpoint", "dst_endpoint", "files": [{"src", "dst"}]}``; mkdir
``{"endpoint", "files": [path]}``; remove ``{"endpoint", "recursive", "files": [path]}``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("transfer", "mkdir", "remove")


class SpecError(ValueError):
    """The spec file is unusable; the message names the file and the problem."""


@dataclass(frozen=True)
class Credentials:
    client_id: str
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: int

    def secrets(self) -> list[str]:
        return [s for s in (self.access_token, self.refresh_token) if s]


@dataclass(frozen=True)
class Spec:
    mode: str
    credentials: Credentials
    files: list[Any]
    source: str = ""
    destination: str = ""
    endpoint: str = ""
    recursive: bool = False


def load_spec(path: str | Path, mode: str) -> Spec:
    try:
        document = json.loads(Path(path).read_text())
    except OSError as error:
        raise SpecError(f"cannot read spec file {path}: {error.strerror}") from None
    except ValueError as error:
        raise SpecError(f"spec file {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise SpecError(f"spec file {path} must hold a JSON object")

    def need(key: str, kind: type | tuple[type, ...] = str) -> Any:
        value = document.get(key)
        if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
            raise SpecError(f"spec file {path}: '{key}' is missing or not a "
                            f"{getattr(kind, '__name__', 'valid value')}")
        return value

    def collection(key: str) -> str:
        value = need(key)
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise SpecError(f"spec file {path}: '{key}' is {value!r}, not a collection UUID "
                            "(go:// URLs must name collections by UUID)") from None

    refresh = document.get("transfer_rt")
    if refresh is not None and not isinstance(refresh, str):
        raise SpecError(f"spec file {path}: 'transfer_rt' must be a token string or null")
    try:
        expires_at = int(document.get("transfer_at_exp") or 0)
    except (TypeError, ValueError, OverflowError):  # Infinity, NaN
        raise SpecError(f"spec file {path}: 'transfer_at_exp' is not a number") from None
    credentials = Credentials(need("client_id"), need("transfer_at"),
                              refresh if refresh not in (None, "", "None") else None, expires_at)
    files = need("files", list)
    if not files:
        raise SpecError(f"spec file {path}: 'files' is empty")
    if mode == "transfer":
        for entry in files:
            if not (isinstance(entry, dict) and isinstance(entry.get("src"), str)
                    and isinstance(entry.get("dst"), str)):
                raise SpecError(f"spec file {path}: each transfer file needs 'src' and 'dst'")
        return Spec(mode, credentials, files, source=collection("src_endpoint"),
                    destination=collection("dst_endpoint"))
    if not all(isinstance(entry, str) for entry in files):
        raise SpecError(f"spec file {path}: 'files' must list paths")
    return Spec(mode, credentials, files, endpoint=collection("endpoint"),
                recursive=_flag(document.get("recursive", False), "recursive", path))


def _flag(value: Any, key: str, path: str | Path) -> bool:
    """A boolean, or the "True"/"False" strings the Pegasus planner writes in remove specs;
    anything else is refused, so a non-recursive removal can never delete a tree."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise SpecError(f"spec file {path}: '{key}' is {value!r}; use true or false")
