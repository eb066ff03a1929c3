"""Everything the emulator remembers, kept in one JSON file under its root directory."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SECTIONS = ("codes", "tokens", "refresh_tokens", "tasks", "submissions", "timers", "collections",
            "clients", "consents")


class StateStore:
    """A dict of sections guarded by one lock and flushed to ``root/state.json``.

    Handlers change ``data`` while holding ``lock`` and call :meth:`mark_dirty`; a background
    thread writes dirty state at most every ``flush_interval`` seconds (atomically: temporary
    file, fsync, rename), and :meth:`close` writes the last changes. Mode 0600, because the
    file holds the tokens the emulator issued.

    A write serialises everything under the lock, so its cost grows with the state (a task of
    100,000 items: a second): the next write waits at least ``FLUSH_SHARE`` times as long as
    the last took, so writing never holds the lock more than a tenth of the time, whatever
    the state's size (every 0.2 s it made a task's run quadratic in its items). An entry that
    will not change again (a finished task: most of the state's bytes) is sealed (:meth:`seal`) and
    its text made once, so a write's cost follows what still changes, not the history.
    """

    FLUSH_SHARE = 10

    def __init__(self, root: Path, flush_interval: float = 0.2) -> None:
        self.path = root / "state.json"
        self.lock = threading.RLock()
        self.data: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        self.data["meta"] = {}
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            self.data.update({k: v for k, v in saved.items() if isinstance(v, dict)})
        self._dirty = False
        self._last_flush = 0.0  # seconds the last write took
        # section -> key -> (the entry, its JSON text): entries that no longer change
        self._sealed: dict[str, dict[str, tuple[Any, str]]] = {}
        self._closed = threading.Event()
        self._interval = flush_interval
        self._thread = threading.Thread(target=self._flush_loop, name="state-flush", daemon=True)
        self._thread.start()

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]

    def mark_dirty(self) -> None:
        self._dirty = True

    def seal(self, section: str, key: str) -> None:
        """Say that ``self[section][key]`` will not change again: its text is made now,
        once, and every later write reuses it."""
        with self.lock:
            entry = self.data[section][key]
            self._sealed.setdefault(section, {})[key] = (entry, _json(entry))

    def _pieces(self) -> list[str]:
        """The state as JSON, in pieces: sealed entries as their text (only while the entry
        is the one sealed: one put in its place is written as it is), which is neither made
        nor copied again here, so the lock is held only for what still changes."""
        pieces = ["{"]
        for number, (name, section) in enumerate(self.data.items()):
            pieces.append(f"{',' if number else ''}{json.dumps(name)}:")
            sealed = self._sealed.get(name)
            if not sealed:
                pieces.append(_json(section))
                continue
            pieces.append("{")
            for index, (key, entry) in enumerate(section.items()):
                pieces.append(f"{',' if index else ''}{json.dumps(key)}:")
                seal = sealed.get(key)
                pieces.append(seal[1] if seal is not None and seal[0] is entry else _json(entry))
            pieces.append("}")
        pieces.append("}")
        return pieces

    def flush(self) -> None:
        started = time.monotonic()
        with self.lock:
            if not self._dirty:
                return
            pieces = self._pieces()
            self._dirty = False
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as out:
                out.writelines(pieces)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        self._last_flush = time.monotonic() - started

    def close(self) -> None:
        self._closed.set()
        self._thread.join()
        self.flush()

    def _flush_loop(self) -> None:
        while not self._closed.wait(self.next_wait()):
            self.flush()

    def next_wait(self) -> float:
        """Seconds until the next write."""
        return max(self._interval, self.FLUSH_SHARE * self._last_flush)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
