"""Directory listings on Globus collections, one per directory, several at a time.

A listing either gives the directory's entries (name -> ``file`` or ``dir``) or says why not,
in the few kinds the pre-flight check tells apart. Nothing is ever changed: ``ls`` and the
endpoint document are the only calls.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

PAGE = 100_000  # the most entries Globus Transfer lists at once
THREADS = 8

# why a listing failed
MISSING, NOT_A_DIRECTORY, CONSENT, SESSION, DENIED, REFUSED, OUTSIDE = (
    "missing", "not a directory", "consent", "session", "denied", "refused", "outside")
COLLECTION_WIDE = (CONSENT, SESSION)  # the same for every path of the collection


@dataclass(frozen=True)
class Failure:
    kind: str
    detail: str = ""


def retry_config() -> Any:
    """globus-sdk's retries, less 502: Transfer relays a collection's definite answers (not
    a directory, login failed) as 502, which no retry changes."""
    from globus_sdk.transport import RetryConfig

    return RetryConfig(transient_error_status_codes=(429, 500, 503, 504))


def classify(error: Any) -> Failure:
    """A globus-sdk API error from ``ls`` or ``get_endpoint``, as a :class:`Failure`."""
    code = str(error.code)
    if error.http_status == 403 and code == "ConsentRequired":
        return Failure(CONSENT)  # its authorization_parameters name the scopes
    if error.info.authorization_parameters:
        return Failure(SESSION, error.info.authorization_parameters.session_message or "")
    if code.endswith("PathOutsideCollection"):  # the URL's fault (.. above the root)
        return Failure(OUTSIDE)
    if error.http_status == 404 or code.endswith("NotFound"):
        return Failure(MISSING)
    if code.endswith("NotDirectory"):
        return Failure(NOT_A_DIRECTORY)
    if error.http_status == 403:
        return Failure(DENIED, code)
    return Failure(REFUSED, f"{error.http_status} {code}")


class Listings:
    """Lists directories through ``client`` (a ``globus_sdk.TransferClient``), each once."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0
        self._lock = threading.Lock()
        self._done: dict[tuple[str, str], dict[str, str] | Failure] = {}

    def fetch(self, directories: Iterable[tuple[str, str]]) -> None:
        """List every ``(collection, path)`` not listed yet, :data:`THREADS` at a time."""
        wanted = [d for d in dict.fromkeys(directories) if d not in self._done]
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            for directory, result in zip(wanted, pool.map(self._list, wanted)):
                self._done[directory] = result

    def get(self, collection: str, path: str) -> dict[str, str] | Failure:
        self.fetch([(collection, path)])
        return self._done[(collection, path)]

    def _list(self, directory: tuple[str, str]) -> dict[str, str] | Failure:
        import globus_sdk

        collection, path = directory
        entries: dict[str, str] = {}
        offset = 0
        while True:
            with self._lock:
                self.calls += 1
            try:
                page = self.client.operation_ls(collection, path=path, limit=PAGE,
                                                offset=offset)
            except globus_sdk.GlobusAPIError as error:
                return classify(error)
            rows = page.get("DATA") or []
            entries.update((row["name"], row.get("type", "file")) for row in rows)
            offset += len(rows)
            if not rows or offset >= page.get("total", offset) or len(rows) < PAGE:
                return entries
