"""One HTTP server that answers as Globus Auth, Transfer and Timers at a single base URL, and
as a GCS endpoint's Manager API over TLS on the same port."""

from __future__ import annotations

import errno
import os
import random
import socket
import ssl
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .auth import AuthService
from .clock import ScaledClock
from .errors import ApiError, error_body, service_of, shutting_down
from .gcs import GcsService
from .https import HttpsService
from .paths import collection_id, resolve
from .state import StateStore
from .timers import TimersService
from .tls import certificate, server_context, wants_tls
from .transfer import TransferService
from .web import Body, BodyCutOff, FileBody, Request, Response, Route

SERVICES = ("AUTH", "TRANSFER", "TIMER")
# consent_required: a mapped collection whose data_access must be consented (GCSv5);
# guest: a guest collection, which has no data_access scope at all; high_assurance: its
# endpoint document says so, and its operations want a login younger than its timeout;
# no_https: no HTTPS server (GCSv4, Globus Connect Personal)
COLLECTION_FLAGS = ("consent_required", "permission_denied", "inactive", "guest",
                    "high_assurance", "no_https")
DEFAULT_TOKEN_LIFETIME = 172800.0
POLL_SECONDS = 0.05  # how soon serve_forever notices a shutdown request


class Emulator:
    """The Globus emulator, started and stopped in-process::

        with Emulator("/tmp/g") as emulator:
            os.environ.update(emulator.environment)
            ...  # plain globus-sdk code now talks to the emulator

    :param root: directory for collections (``root/collections/<uuid>/``) and saved state
    :param port: TCP port; 0 picks a free one
    :param time_scale: how much faster than real time the timers' clock runs
    :param fault_rate: fraction of requests (0..1) answered 502/503 or dropped
    :param seed: seed for the fault injection
    :param token_lifetime: access token lifetime in seconds (real time)
    :param bandwidth: emulated transfer rate in bytes per emulated second; 0 is unlimited
    :param task_latency: real seconds a task waits before it starts, as a real service takes
        a moment to pick a task up; 0 starts at once
    :param collections: collections served from existing directories, ``{uuid: directory}``,
        as Globus Connect exposes a path (a site's shared scratch, say); every other
        collection lives in ``root/collections/<uuid>/``
    """

    def __init__(self, root: str | Path, host: str = "127.0.0.1", port: int = 0,
                 time_scale: float = 1.0, fault_rate: float = 0.0, seed: int | None = None,
                 token_lifetime: float = DEFAULT_TOKEN_LIFETIME, bandwidth: float = 0.0,
                 task_latency: float = 0.0,
                 collections: dict[str, str | Path] | None = None) -> None:
        if not 0 <= fault_rate <= 1:
            raise ValueError(f"fault rate must be between 0 and 1, got {fault_rate}")
        self.root = Path(root).resolve()
        (self.root / "collections").mkdir(parents=True, exist_ok=True)
        self.state = StateStore(self.root)
        self.clock = ScaledClock(time_scale, self.state["meta"].get("clock", 0.0))
        self.settings: dict[str, Any] = {"fault_rate": fault_rate, "token_lifetime":
                                         token_lifetime, "bandwidth": bandwidth,
                                         "task_latency": task_latency}
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self._collection_dirs: dict[str, Path] = {}  # collection id -> its directory
        for collection, directory in (collections or {}).items():
            self.map_collection(collection, directory)
        self.auth = AuthService(self.state, self.settings)
        self.transfer = TransferService(self)
        self.timers = TimersService(self, self.transfer)
        self.https = HttpsService(self)
        self.gcs = GcsService(self)
        self.routes: list[Route] = [
            *self.auth.routes(), *self.transfer.routes(), *self.timers.routes(),
            *self.https.routes(), *self.gcs.routes(),
            *self._admin_routes(),
        ]
        self.certificate = certificate(self.root / "tls", host)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.emulator = self
        self._httpd.tls = server_context(self.certificate)
        self._thread: threading.Thread | None = None
        # requests being answered, and whether the emulator closes: close() waits for them
        # (their threads are daemons, which nothing else waits for) before it saves the state,
        # so that none writes in the collections once it returned and its root can be removed
        self._answering, self._closing = 0, False
        self._answered = threading.Condition()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def environment(self) -> dict[str, str]:
        """The variables that point globus-sdk at this emulator (all a job needs)."""
        return {f"GLOBUS_SDK_SERVICE_URL_{name}": self.url for name in SERVICES}

    @property
    def tls_environment(self) -> dict[str, str]:
        """What makes globus-sdk trust the emulator's certificate, for its GCS Manager API,
        the one part clients call over TLS (``globus collection show``). Apart from
        :attr:`environment`: globus-sdk refuses to start where the file cannot be read, as
        under another account than the emulator's (a pool's jobs)."""
        return {"GLOBUS_SDK_VERIFY_SSL": str(self.certificate)}

    def _begin(self) -> None:
        """Restart unfinished tasks and the timers' scheduler, before serving."""
        self.transfer.resume_unfinished()
        self.timers.start()

    def start(self) -> Emulator:
        self._begin()
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(POLL_SECONDS,),
                                        name="emulator-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`shutdown` is called from another."""
        self._begin()
        self._httpd.serve_forever(POLL_SECONDS)

    def shutdown(self) -> None:
        self._httpd.shutdown()

    def close(self) -> None:
        """Stop serving, wait for the requests being answered (uploads aside, at most
        CLOSE_WAIT seconds), abandon the uploads still arriving and save the state."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
        with self._answered:
            self._closing = True  # a kept-alive connection's next request is refused
            self._answered.wait_for(lambda: not self._answering, CLOSE_WAIT)
        self.https.abandon_uploads()
        self.timers.stop()
        self.transfer.stop()
        with self.state.lock:
            self.state["meta"]["clock"] = self.clock.now()
            self.state.mark_dirty()
        self.state.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # -- collections -----------------------------------------------------------------------

    def collection_flags(self, collection: str) -> dict[str, Any]:
        return self.state["collections"].get(collection.lower(), {})

    def mark_collection(self, collection: str, **flags: bool) -> dict[str, Any]:
        """Set ``consent_required``, ``permission_denied``, ``inactive``, ``guest`` or
        ``high_assurance`` on a collection."""
        unknown = set(flags) - set(COLLECTION_FLAGS)
        if unknown:
            raise ValueError(f"unknown collection flags: {', '.join(sorted(unknown))}")
        merged = {**self.collection_flags(collection_id(collection)), **flags}
        if merged.get("guest") and merged.get("consent_required"):
            raise ValueError("a guest collection has no data_access consent to require")
        return self._update_collection(collection, {k: bool(v) for k, v in flags.items()})

    def register_client(self, name: str = "test client") -> tuple[str, str]:
        """A confidential client the emulated Auth knows: ``(client_id, client_secret)``."""
        return self.auth.api.register(name)

    def map_collection(self, collection: str, directory: str | Path) -> dict[str, Any]:
        """Serve ``collection`` from an existing ``directory``: its ``/`` is that directory."""
        path = Path(directory).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"collection {collection}: {directory} is not a directory")
        return self._update_collection(collection, {"root": str(path)})

    def _update_collection(self, collection: str, changes: dict[str, Any]) -> dict[str, Any]:
        collection = collection_id(collection)
        with self.state.lock:
            current = self.state["collections"].setdefault(collection, {})
            current.update(changes)
            self.state.mark_dirty()
            return dict(current)

    def collection_path(self, collection: str) -> Path:
        """The local directory holding a collection's files (created on demand, so a new
        collection has a root, as every real one does)."""
        mapped = self.collection_flags(collection_id(collection)).get("root")
        if mapped:
            return Path(mapped)
        collection = collection_id(collection)
        path = self._collection_dirs.get(collection)
        if path is None:  # made once: joining paths cost more than the stat below
            path = self._collection_dirs.setdefault(collection,
                                                    self.root / "collections" / collection)
        if not os.path.isdir(path):  # a stat: mkdir's refusal costs more; this runs per path
            path.mkdir(parents=True, exist_ok=True)
        return path

    def hand_over(self, path: Path) -> None:
        """Give what the service just made at ``path`` (and the directories it made above it)
        to the owner of the collection's mapped directory: a real collection writes as the
        local account its identity maps to, so a job of that account can write where the
        service made a directory (a site's scratch). Only a root service can, and needs to."""
        if os.geteuid() != 0:
            return
        for mapped in (Path(flags["root"]) for flags in self.state["collections"].values()
                       if flags.get("root")):
            if mapped in path.parents:
                owner = mapped.stat()
                for made in (path, *path.parents):
                    if made == mapped or made.stat().st_uid == owner.st_uid:
                        return
                    os.lchown(made, owner.st_uid, owner.st_gid)

    def resolve(self, collection: str, path: str) -> Path:
        """The local file behind a Globus ``path`` on ``collection``, never outside it."""
        return resolve(self.collection_path(collection), path)

    # -- admin routes under /_emulator/ ------------------------------------------------------

    def _admin_routes(self) -> list[Route]:
        return [
            Route("GET", "/_emulator/stats", self._get_stats),
            Route("DELETE", "/_emulator/stats", self._reset_stats),
            Route("GET", "/_emulator/settings", self._get_settings),
            Route("PATCH", "/_emulator/settings", self._patch_settings),
            Route("GET", "/_emulator/collections", self._get_collections),
            Route("POST", "/_emulator/collections/{collection}", self._post_collection),
            Route("POST", "/_emulator/tokens/expire", self._expire_tokens),
            Route("POST", "/_emulator/sessions/expire", self._expire_sessions),
            Route("GET", "/_emulator/clock", self._get_clock),
        ]

    def _get_stats(self, request: Request) -> Response:
        with self.state.lock:
            requests = dict(self.stats)
        faults = requests.pop("faults", 0)
        connections = requests.pop("connections", 0)
        return Response(200, {"requests": requests, "total": sum(requests.values()),
                              "faults": faults, "connections": connections})

    def _reset_stats(self, request: Request) -> Response:
        with self.state.lock:
            self.stats.clear()
        return Response(200, {"requests": {}, "total": 0, "faults": 0, "connections": 0})

    def _get_settings(self, request: Request) -> Response:
        return Response(200, {**self.settings, "time_scale": self.clock.scale})

    def _patch_settings(self, request: Request) -> Response:
        changes = request.json()
        for key, value in changes.items():
            if key not in self.settings or not isinstance(value, (int, float)):
                raise ApiError(400, "BadRequest", f"Unknown or non-numeric setting '{key}'")
        if not 0 <= changes.get("fault_rate", 0) <= 1:
            raise ApiError(400, "BadRequest", "fault_rate must be between 0 and 1")
        self.settings.update(changes)
        return self._get_settings(request)

    def _get_collections(self, request: Request) -> Response:
        with self.state.lock:
            return Response(200, dict(self.state["collections"]))

    def _post_collection(self, request: Request, collection: str) -> Response:
        """Flags (``{"inactive": true}``) and/or a directory to serve (``{"root": "/path"}``)."""
        try:
            changes = dict(request.json())
            root = changes.pop("root", None)
            flags = self.mark_collection(collection, **changes)
            if root is not None:
                flags = self.map_collection(collection, str(root))
        except (TypeError, ValueError) as error:
            raise ApiError(400, "BadRequest", str(error)) from None
        return Response(200, flags)

    def _expire_tokens(self, request: Request) -> Response:
        """Expire every access token now, so clients must refresh."""
        with self.state.lock:
            for record in self.state["tokens"].values():
                record["expires_at"] = 0.0
            self.state.mark_dirty()
            return Response(200, {"expired": len(self.state["tokens"])})

    def _expire_sessions(self, request: Request) -> Response:
        """Age every login past any authentication timeout: high-assurance collections then
        want a fresh login, which no token refresh gives."""
        return Response(200, {"expired": self.auth.expire_sessions()})

    def _get_clock(self, request: Request) -> Response:
        return Response(200, {"now": self.clock.now(), "time_scale": self.clock.scale})

    # -- request dispatch ------------------------------------------------------------------

    def streams_body(self, method: str, path: str) -> bool:
        """Whether the route a request goes to reads its body itself, as it arrives."""
        return any(route.streamed and route.method == method and route.pattern.match(path)
                   for route in self.routes)

    def dispatch(self, request: Request) -> tuple[Response, str | None]:
        """Answer one request; also says which fault, if any, to inject into the answer."""
        # an upload is not waited for: it may be stalled mid-body, and close() removes its
        # part file (HttpsService.abandon_uploads), which it then cannot land
        counted = request.stream is None
        with self._answered:
            if self._closing:
                return self._error(service_of(request.path), shutting_down(),
                                   request.path), None
            self._answering += counted
        try:
            return self._dispatch(request)
        finally:
            with self._answered:
                self._answering -= counted
                self._answered.notify_all()

    def _dispatch(self, request: Request) -> tuple[Response, str | None]:
        service = service_of(request.path)
        allowed: list[str] = []
        for route in self.routes:
            match = route.pattern.match(request.path)
            if not match:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            if service == "emulator":  # admin calls are neither counted nor faulted
                return self._as_response(route.handler(request, **match.groupdict())), None
            with self.state.lock:
                self.stats[route.key] += 1
            fault = self._draw_fault()
            if fault in ("502", "503"):
                error = ApiError(int(fault), "ServiceUnavailable" if fault == "503"
                                 else "BadGateway", "Injected fault: try again")
                return self._error(service, error, request.path), fault
            try:
                return self._as_response(route.handler(request, **match.groupdict())), fault
            except ApiError as error:
                return self._error(service, error, request.path), fault
        if allowed:
            error = ApiError(405, "MethodNotAllowed",
                             f"{request.method} is not allowed on {request.path}")
            response = self._error(service, error, request.path)
            response.headers["Allow"] = ", ".join(sorted(set(allowed)))
            return response, None
        return self._error(service, ApiError(404, "ClientError.NotFound",
                                             f"No such route: {request.path}"), request.path), None

    def _draw_fault(self) -> str | None:
        rate = self.settings["fault_rate"]
        if not rate:
            return None
        with self._random_lock:
            if self._random.random() >= rate:
                return None
            kind = self._random.choice(("502", "503", "drop"))
        with self.state.lock:
            self.stats["faults"] += 1
        return kind

    @staticmethod
    def _as_response(result: Any) -> Response:
        return result if isinstance(result, Response) else Response(200, result)

    @staticmethod
    def _error(service: str, error: ApiError, path: str) -> Response:
        return Response(error.status, error_body(service, error, path))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: Emulator
    tls: ssl.SSLContext

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about a client that hung up or refused the certificate (its own error says
        so); a bug still prints its traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


MAX_BODY = 64 * 1024 * 1024  # bytes; Globus documents are small, and nothing is read past it
# (file uploads excepted: they are streamed to disk, of any size)
FILE_CHUNK = 1 << 20  # bytes of a download read and sent at a time
IDLE_TIMEOUT = 60.0  # seconds a kept-alive connection may sit idle before it is closed
CLOSE_WAIT = 10.0  # seconds close() waits for the requests being answered


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT  # socket timeout: idle keep-alive connections do not hold threads
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines would end up in test output and demo logs."""

    def setup(self) -> None:
        """Count the connection: how many a client opens for its requests is in the stats.
        A connection that opens with a TLS handshake is answered over TLS."""
        self.request.settimeout(self.timeout)
        if wants_tls(self.request):
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()
        # an answer goes out as two writes (head, then body): with Nagle's algorithm the body
        # waits for the client's delayed ACK of the head, up to 40 ms per request on Linux
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.emulator.state.lock:
            self.server.emulator.stats["connections"] += 1

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        if self.headers.get("Transfer-Encoding") and not self.headers.get("Content-Length"):
            self.close_connection = True  # a chunked body is not read: never take it as empty
            self._send(Response(411, {"code": "LengthRequired",
                                      "message": "send the body with a Content-Length"}))
            return
        declared = (self.headers.get("Content-Length") or "0").strip()
        streamed = self.server.emulator.streams_body(self.command, parts.path)
        if not declared.isdigit() or (int(declared) > MAX_BODY and not streamed):
            self.close_connection = True  # the body cannot be skipped reliably: hang up after
            self._send(Response(413 if declared.isdigit() else 400, {
                "code": "RequestEntityTooLarge" if declared.isdigit() else "BadRequest",
                "message": f"Content-Length {declared[:20]!r}: a number up to {MAX_BODY}"}))
            return
        length = int(declared)
        stream, body = (Body(self.rfile, length), b"") if streamed else (None, b"")
        if not streamed and length:
            body = self.rfile.read(length)
            if len(body) < length:  # the client stopped sending (killed mid-upload): nothing
                self.close_connection = True  # done
                return
        request = Request(
            method=self.command, path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()}, body=body, stream=stream,
        )
        try:
            response, fault = self.server.emulator.dispatch(request)
        except BodyCutOff:  # the handler kept nothing; there is no one left to answer
            self.close_connection = True
            return
        except OSError as error:  # a name too long, say: never the service's local paths
            code = errno.errorcode.get(error.errno or 0, "EIO")
            status = 400 if error.errno == errno.ENAMETOOLONG else 500
            body = {"code": "ClientError.BadRequest" if status == 400 else "InternalError",
                    "message": f"{type(error).__name__} ({code}): {error.strerror}"}
            response, fault = Response(status, body), None
        except Exception as error:  # a bug must answer 500, never kill the connection thread
            body = {"code": "InternalError", "message": f"{type(error).__name__}: {error}"}
            response, fault = Response(500, body), None
        if stream is not None:
            try:
                stream.discard()  # what a refusal left unread, never taken as a next request
            except BodyCutOff:
                self.close_connection = True
                return
        if fault == "drop":  # the work was done, but the answer is lost on the way back
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        if isinstance(response.body, FileBody):
            self._send_file(response, response.body)
            return
        payload = response.encode()
        self._send_head(response, len(payload))
        self.wfile.write(payload)

    def _send_head(self, response: Response, length: int) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(length))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send_file(self, response: Response, body: FileBody) -> None:
        """A file as it is read, a chunk at a time, as a file server sends a download: one
        read of a whole large file costs several times more, and holds it all in memory."""
        with open(body.path, "rb") as handle:
            left = os.fstat(handle.fileno()).st_size
            self._send_head(response, left)
            while left and (chunk := handle.read(min(FILE_CHUNK, left))):
                self.wfile.write(chunk)
                left -= len(chunk)
        if left:  # the file shrank while it was sent: the client must see the answer cut off
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
