"""The small request/response/route layer the emulated services are written against."""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable
from urllib.parse import parse_qs

from .errors import ApiError


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""
    stream: Body | None = None  # the body, for a route that streams it (``Route.streamed``)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> dict[str, Any]:
        try:
            document = json.loads(self.body or b"{}")
        except ValueError:
            raise ApiError(400, "ClientError.BadRequest",
                           "Request body is not valid JSON") from None
        except RecursionError:  # nested deeper than the parser goes
            raise ApiError(400, "ClientError.BadRequest",
                           "Request body is nested too deeply") from None
        if not isinstance(document, dict):
            raise ApiError(400, "ClientError.BadRequest", "Request body must be a JSON object")
        return document

    def form(self) -> dict[str, str]:
        try:
            fields = parse_qs(self.body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise ApiError(400, "invalid_request", "Request body is not form-encoded") from None
        return {key: values[-1] for key, values in fields.items()}

    def bearer_token(self) -> str | None:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def basic_auth(self) -> tuple[str, str] | None:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        return user, password


class BodyCutOff(Exception):
    """The client stopped sending before the ``Content-Length`` it declared: the request is
    dropped, nothing it wrote is kept, and it gets no answer."""


class Body:
    """A request body read as it arrives, at most ``length`` bytes of ``source``, as a server
    writes a file upload to disk instead of holding it in memory."""

    def __init__(self, source: BinaryIO, length: int) -> None:
        self._source = source
        self.left = length

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes, b"" at the end; BodyCutOff when the client stopped short."""
        if not self.left:
            return b""
        try:
            chunk = self._source.read(min(size, self.left))
        except OSError:  # reset, or silent past the idle timeout
            raise BodyCutOff from None
        if not chunk:
            raise BodyCutOff
        self.left -= len(chunk)
        return chunk

    def discard(self) -> None:
        """Read what is left and drop it: an answer given before the body was read (a
        refusal) then reaches the client, and the connection serves its next request."""
        while self.read(1 << 20):
            pass


@dataclass
class FileBody:
    """An answer's body that is a file, sent as it is read (a download), not held whole."""

    path: str | os.PathLike[str]


@dataclass
class Response:
    status: int
    body: Any
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The body as bytes (not for a FileBody, which the server sends as it reads it)."""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[..., Any]


@dataclass
class Route:
    """``template`` is a path like ``/v0.10/task/{task_id}``; its fields become arguments.
    ``{name*}`` takes the rest of the path, slashes included. A ``streamed`` route reads its
    body itself, from ``Request.stream``, of any length (a file upload)."""

    method: str
    template: str
    handler: Handler
    streamed: bool = False
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\*\}", r"(?P<\1>.*)", self.template)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self.pattern = re.compile(f"^{regex}$")

    @property
    def key(self) -> str:
        """The name request statistics are counted under."""
        return f"{self.method} {self.template}"
