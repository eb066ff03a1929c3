"""What the Transfer routes share: a token's consents and a collection's permissions, and
answers in pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..auth import TRANSFER_SCOPE, data_access_scope, granted_data_access
from ..errors import ApiError
from ..gcs import HIGH_ASSURANCE_TIMEOUT_MINUTES
from ..web import Request

if TYPE_CHECKING:
    from ..host import Host


def missing_consents(emulator: Host, collections: list[str], scopes: list[str]) -> list[str]:
    """The data_access scopes these token scopes lack for consent-requiring collections."""
    granted = granted_data_access(scopes)
    return [
        data_access_scope(c) for c in dict.fromkeys(collections)
        if emulator.collection_flags(c).get("consent_required") and c not in granted
    ]


def require_consent(emulator: Host, collections: list[str], token: dict[str, Any]) -> None:
    missing = missing_consents(emulator, collections, token["scopes"])
    if missing:
        required = [f"{TRANSFER_SCOPE}[{' '.join('*' + s for s in missing)}]"]
        raise ApiError(
            403, "ConsentRequired", "Missing required data_access consent",
            required_scopes=required,
            authorization_parameters={
                "session_message": "Missing required data_access consent",
                "required_scopes": required,
            },
        )


def require_session(emulator: Host, collection: str, token: dict[str, Any],
                    failed: str) -> None:
    """A high-assurance collection refuses a login older than its authentication timeout,
    as Globus Transfer relays the collection's refusal: a 502 ``ExternalError.<operation>
    Failed.LoginFailed`` whose ``authorization_parameters`` ask for a fresh login."""
    timeout = HIGH_ASSURANCE_TIMEOUT_MINUTES
    if not emulator.collection_flags(collection).get("high_assurance") or \
            not emulator.auth.session_expired(token, timeout):
        return
    message = (f"Your authentication with this collection has expired (its authentication "
               f"timeout is {timeout} minutes): log in again")
    raise ApiError(
        502, f"ExternalError.{failed}.LoginFailed",
        f"Command Failed: Error (login)\nEndpoint: Emulated collection {collection[:8]} "
        f"({collection})\nMessage: Login Failed\n---\nDetails: 530-Login incorrect. : "
        f"GlobusError: v=1 c=LOGIN_DENIED\n530-GridFTP-Message: {message}\n530 End.",
        authorization_parameters={"session_message": message,
                                  "session_required_identities": [token["sub"]],
                                  "prompt": "login"})


def require_permission(emulator: Host, collection: str) -> None:
    if emulator.collection_flags(collection).get("permission_denied"):
        raise ApiError(403, "EndpointPermissionDenied",
                       f"Permission denied on collection {collection}")


def page(data_type: str, rows: list[dict[str, Any]], request: Request) -> dict[str, Any]:
    """One page of ``rows`` as Transfer answers lists, by the request's offset and limit."""
    try:
        offset = int(request.arg("offset", "0") or 0)
        limit = int(request.arg("limit", "1000") or 1000)
    except ValueError:
        raise ApiError(400, "ClientError.BadRequest",
                       "offset and limit must be integers") from None
    rows_here = rows[offset:offset + limit]
    return {"DATA_TYPE": data_type, "DATA": rows_here, "length": len(rows_here), "limit": limit,
            "offset": offset, "total": len(rows)}
