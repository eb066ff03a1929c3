"""The small request/response/route layer the emulated services are written against."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs

from .errors import ApiError


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

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


@dataclass
class Response:
    status: int
    body: Any
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[..., Any]


@dataclass
class Route:
    """``template`` is a path like ``/v0.10/task/{task_id}``; its fields become arguments.
    ``{name*}`` takes the rest of the path, slashes included."""

    method: str
    template: str
    handler: Handler
    pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\*\}", r"(?P<\1>.*)", self.template)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        self.pattern = re.compile(f"^{regex}$")

    @property
    def key(self) -> str:
        """The name request statistics are counted under."""
        return f"{self.method} {self.template}"
