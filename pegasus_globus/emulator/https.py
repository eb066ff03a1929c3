"""Emulated HTTPS access to GCSv5 collections: the ``https_server`` of a collection's endpoint
document, plain HTTP on loopback here. ``GET`` reads a file, ``PUT`` writes one (whole or not
at all, into an existing directory), as Globus Connect Server's HTTPS interface does, with a
token for the collection's ``https`` scope (resource server: the collection itself).

A collection marked ``no_https`` (GCSv4, Globus Connect Personal) has no HTTPS server.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .errors import ApiError, shutting_down
from .paths import collection_id
from .web import FileBody, Request, Response, Route

if TYPE_CHECKING:
    from .host import Host

PREFIX = "/https"
CHUNK = 1 << 20  # bytes of an upload read and written at a time (a download's: server.py)


def https_scope(collection: str) -> str:
    return f"https://auth.globus.org/scopes/{collection}/https"


def https_server(flags: dict[str, Any], collection: str, host: str) -> str | None:
    """The ``https_server`` of a collection with these flags, or None when it serves no
    HTTPS; ``host`` is the emulator's address as the client called it."""
    if flags.get("no_https"):
        return None
    return f"http://{host}{PREFIX}/{collection}"


class HttpsService:
    def __init__(self, emulator: Host) -> None:
        self.emulator = emulator
        self._arriving: set[str] = set()  # part files of uploads still arriving
        self._arriving_lock = threading.Lock()

    def abandon_uploads(self) -> None:
        """Remove the part files of uploads still arriving (the server is stopping: their
        threads, blocked reading, would never get to it), so no collection keeps one."""
        with self._arriving_lock:
            for temporary in self._arriving:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
            self._arriving.clear()

    def routes(self) -> list[Route]:
        return [Route("GET", f"{PREFIX}/{{collection}}/{{path*}}", self.get),
                Route("PUT", f"{PREFIX}/{{collection}}/{{path*}}", self.put, streamed=True)]

    def _target(self, request: Request, collection: str, path: str) -> os.PathLike[str]:
        collection = collection_id(collection)
        flags = self.emulator.collection_flags(collection)
        if flags.get("no_https"):
            raise ApiError(404, "NotFound", f"Collection {collection} has no HTTPS server")
        token = self.emulator.auth.check(request, collection)
        if https_scope(collection) not in (scope.split("[")[0] for scope in token["scopes"]):
            raise ApiError(403, "Forbidden", f"The token lacks {https_scope(collection)}")
        if flags.get("permission_denied"):
            raise ApiError(403, "Forbidden", f"Permission denied on collection {collection}")
        return self.emulator.resolve(collection, "/" + unquote(path))  # as GCS decodes them

    def get(self, request: Request, collection: str, path: str) -> Response:
        target = self._target(request, collection, path)
        if not os.path.isfile(target):
            raise ApiError(404, "NotFound", f"No such file: /{path}")
        return Response(200, FileBody(target), content_type="application/octet-stream")

    def put(self, request: Request, collection: str, path: str) -> Response:
        target = self._target(request, collection, path)
        directory = os.path.dirname(target)
        if not os.path.isdir(directory) or os.path.isdir(target):
            raise ApiError(404 if not os.path.isdir(directory) else 409, "NotFound"
                           if not os.path.isdir(directory) else "Conflict",
                           f"Cannot write /{path}: no such directory, or it is one")
        assert request.stream is not None  # a streamed route
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".https-", suffix=".part")
        with self._arriving_lock:
            self._arriving.add(temporary)
        try:
            # written as it arrives, as GCS does: a file is no bigger than the disk allows,
            # and one write of a whole large body is several times slower than 1 MiB ones
            with os.fdopen(fd, "wb") as handle:
                while chunk := request.stream.read(CHUNK):
                    handle.write(chunk)
                size = handle.tell()
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
            self.emulator.hand_over(Path(target))
        except BaseException as error:
            if os.path.exists(temporary):
                os.unlink(temporary)
            with self._arriving_lock:
                abandoned = temporary not in self._arriving
            if abandoned and isinstance(error, FileNotFoundError):  # the server is stopping:
                # abandon_uploads removed its part file
                raise shutting_down() from None
            raise
        finally:
            with self._arriving_lock:
                self._arriving.discard(temporary)
        return Response(200, {"code": "Created", "path": f"/{path}", "size": size})
