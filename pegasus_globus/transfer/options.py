"""Transfer options, settable per job through environment variables (Pegasus env profiles)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

SYNC_LEVELS = ("exists", "size", "mtime", "checksum")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

# environment variable -> TransferOptions field
VARIABLES = {
    "PEGASUS_GLOBUS_SYNC_LEVEL": "sync_level",
    "PEGASUS_GLOBUS_VERIFY_CHECKSUM": "verify_checksum",
    "PEGASUS_GLOBUS_ENCRYPT_DATA": "encrypt_data",
    "PEGASUS_GLOBUS_PRESERVE_TIMESTAMP": "preserve_timestamp",
    "PEGASUS_GLOBUS_DEADLINE_HOURS": "deadline_hours",
    "PEGASUS_GLOBUS_INACTIVE_TIMEOUT": "inactive_timeout",
    "PEGASUS_GLOBUS_PATH_ERROR_GRACE": "path_error_grace",
    "PEGASUS_GLOBUS_PROGRESS_INTERVAL": "progress_interval",
}


class OptionError(ValueError):
    """A bad option value; the message names the variable and what it accepts."""


@dataclass(frozen=True)
class TransferOptions:
    """How transfers run.

    :param sync_level: skip files already at the destination by ``exists``, ``size``,
        ``mtime`` or ``checksum``; None copies everything (default)
    :param verify_checksum: compare checksums after copying (default True)
    :param encrypt_data: encrypt the data channel (default False)
    :param preserve_timestamp: keep modification times (default False)
    :param deadline_hours: Globus gives up on a task after this long (default 24, as stock)
    :param inactive_timeout: seconds a task may stay INACTIVE before it is cancelled and
        failed (default 900)
    :param path_error_grace: seconds a task may keep reporting a path error (a missing
        source, permission denied) before it is cancelled and failed (default 20). Globus
        itself retries such a task until its deadline; Pegasus should retry the job instead.
    :param progress_interval: seconds between progress lines of a running task (default 60)
    """

    sync_level: str | None = None
    verify_checksum: bool = True
    encrypt_data: bool = False
    preserve_timestamp: bool = False
    deadline_hours: float = 24.0
    inactive_timeout: float = 900.0
    path_error_grace: float = 20.0
    progress_interval: float = 60.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> TransferOptions:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for variable, name in VARIABLES.items():
            text = environ.get(variable, "").strip()
            if text:
                values[name] = _parse(variable, name, text)
        return cls(**values)  # type: ignore[arg-type]


def _parse(variable: str, name: str, text: str) -> object:
    default = getattr(TransferOptions, name)
    if name == "sync_level":
        if text.lower() not in SYNC_LEVELS:
            raise OptionError(f"{variable}={text!r}: use one of {', '.join(SYNC_LEVELS)}")
        return text.lower()
    if isinstance(default, bool):
        if text.lower() not in _TRUE + _FALSE:
            raise OptionError(f"{variable}={text!r}: use true or false")
        return text.lower() in _TRUE
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if number <= 0:
        raise OptionError(f"{variable}={text!r}: use a positive number")
    return number
