"""A local Globus Auth, Transfer and Timers service for rehearsals and tests."""

from .approve import approve
from .server import Emulator

__all__ = ["Emulator", "approve"]
