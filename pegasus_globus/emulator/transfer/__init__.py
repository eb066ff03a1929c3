"""Emulated Globus Transfer (API v0.10): tasks that really copy files between collections.

By concern: :mod:`.tasks` (submitting and reading tasks), :mod:`.worker` (running them),
:mod:`.operations` (ls, mkdir, rename, stat), :mod:`.endpoints` (endpoint documents), and
:mod:`.common` (consents, permissions, pages), which they share.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..web import Route
from .common import missing_consents
from .endpoints import EndpointService
from .operations import OperationService
from .tasks import TaskService
from .worker import TERMINAL, TaskWorker

if TYPE_CHECKING:
    from ..host import Host


class TransferService:
    """The Transfer API, whole: what the emulator serves and the Timers service uses."""

    def __init__(self, emulator: Host) -> None:
        self.emulator = emulator
        self.worker = TaskWorker(emulator)
        self.tasks = TaskService(emulator, self.worker)
        self.operations = OperationService(emulator)
        self.endpoints = EndpointService(emulator)

    def routes(self) -> list[Route]:
        return [*self.tasks.routes(), *self.endpoints.routes(), *self.operations.routes()]

    def stop(self) -> None:
        """Stop every task's worker and wait for them (see :meth:`TaskWorker.stop`)."""
        self.worker.stop()

    def resume_unfinished(self) -> None:
        """Restart the workers of tasks that were running when the emulator last stopped."""
        for task_id, task in list(self.emulator.state["tasks"].items()):
            if task["doc"]["status"] not in TERMINAL:
                self.worker.start(task_id)

    def missing_consents(self, collections: list[str], scopes: list[str]) -> list[str]:
        """The data_access scopes these token scopes lack for consent-requiring collections."""
        return missing_consents(self.emulator, collections, scopes)

    def create_task(self, kind: str, body: dict[str, Any], source: str,
                    destination: str | None, owner: str) -> str:
        """Record a task for identity ``owner`` and start it (a timer's run)."""
        return self.tasks.create_task(kind, body, source, destination, owner)
