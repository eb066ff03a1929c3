"""What the emulated services need from the emulator that holds them.

:class:`~pegasus_globus.emulator.server.Emulator` provides it; the services depend on this
protocol, not on the server, so nothing here imports back into ``server``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from .auth import AuthService
from .clock import ScaledClock


class Host(Protocol):
    state: dict[str, Any]  # the persisted state, shared by every service
    settings: dict[str, Any]  # fault_rate, token_lifetime, ... (admin-settable)
    clock: ScaledClock
    auth: AuthService

    def collection_flags(self, collection: str) -> dict[str, Any]:
        """A collection's configuration (root, kind, ...); empty for a default one."""

    def resolve(self, collection: str, path: str) -> Path:
        """The local path behind ``path`` on ``collection``, never outside its root."""

    def hand_over(self, path: Path) -> None:
        """Give what a service just made at ``path`` to the owner of a mapped collection."""
