"""Errors in the body shape each Globus service uses, so globus-sdk parses them as usual."""

from __future__ import annotations

import uuid
from typing import Any


class ApiError(Exception):
    """An HTTP error answer. ``code`` and ``message`` are what globus-sdk exposes."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def shutting_down() -> ApiError:
    """The answer to a request that comes while the emulator closes."""
    return ApiError(503, "ServiceUnavailable", "The service is shutting down")


def service_of(path: str) -> str:
    """Which emulated service a request path belongs to."""
    if path.startswith("/v0.10"):
        return "transfer"
    if path.startswith(("/v2/timer", "/jobs")):
        return "timer"
    if path.startswith("/v2/"):
        return "auth"
    if path.startswith("/https/"):
        return "https"
    if path.startswith("/gcs/"):
        return "gcs"
    return "emulator"


def error_body(service: str, error: ApiError, resource: str) -> dict[str, Any]:
    request_id = uuid.uuid4().hex[:9]
    if service == "auth":
        return {
            "error": error.code.lower(),
            "error_description": error.message,
            "errors": [
                {
                    "id": request_id,
                    "status": str(error.status),
                    "code": error.code,
                    "title": error.code.replace("_", " ").title(),
                    "detail": error.message,
                }
            ],
            **error.extra,
        }
    if service == "gcs":  # GCS wraps errors in its result envelope, as its answers
        return {"DATA_TYPE": "result#1.0.0", "code": error.code, "detail": None,
                "http_response_code": error.status, "message": error.message, "data": [],
                "has_next_page": False, **error.extra}
    if service == "timer":
        return {"error": {"code": error.code, "detail": error.message, "status": error.status},
                **error.extra}
    return {
        "code": error.code,
        "message": error.message,
        "request_id": request_id,
        "resource": resource,
        **error.extra,
    }
