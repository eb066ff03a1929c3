"""Emulated Globus Connect Server v5 Manager API, as much as ``globus collection show`` reads:
``GET {gcs_manager_url}/api/collections/{id}``.

The emulator is one GCS endpoint hosting every collection: each endpoint document names it
(``owner_id``, as a GCSv5 collection's does) and its ``gcs_manager_url``, served here over
TLS under ``/gcs/<endpoint id>``. Its API wants a token of the endpoint's own resource server
with the ``manage_collections`` scope, which ``globus login --gcs <endpoint id>`` asks for.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .https import https_server
from .paths import collection_id
from .web import Request, Response, Route

if TYPE_CHECKING:
    from .host import Host

PREFIX = "/gcs"
ENDPOINT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "emulator:gcs-endpoint"))
POSIX_CONNECTOR = "145812c8-decc-41f1-83cf-bb2a85a2a70b"  # globus-sdk's ConnectorTable: POSIX
STORAGE_GATEWAY_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "emulator:storage-gateway"))
DEFAULT_AUTHENTICATION_TIMEOUT = 15840  # minutes, GCS's default
HIGH_ASSURANCE_TIMEOUT_MINUTES = 30  # a high-assurance collection's authentication timeout


def manage_collections_scope(endpoint: str = ENDPOINT_ID) -> str:
    return f"urn:globus:auth:scope:{endpoint}:manage_collections"


def gcs_manager_url(host: str) -> str:
    """The endpoint's manager URL; ``host`` is the emulator's address as the client called it."""
    return f"https://{host}{PREFIX}/{ENDPOINT_ID}"


def mapped_collection_of(guest: str) -> str:
    """The (emulated) mapped collection a guest collection is made on."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator:mapped-for:{guest}"))


class GcsService:
    def __init__(self, emulator: Host) -> None:
        self.emulator = emulator

    def routes(self) -> list[Route]:
        return [Route("GET", f"{PREFIX}/{{endpoint}}/api/collections/{{collection}}",
                      self.get_collection)]

    def _check(self, request: Request, endpoint: str) -> None:
        if endpoint.lower() != ENDPOINT_ID:
            raise ApiError(404, "not_found", f"No GCS endpoint {endpoint} here")
        try:
            token = self.emulator.auth.check(request, ENDPOINT_ID)
        except ApiError:
            raise ApiError(401, "unauthorized", "Missing, expired or invalid bearer token "
                           f"for endpoint {ENDPOINT_ID}") from None
        if manage_collections_scope() not in (s.split("[")[0] for s in token["scopes"]):
            raise ApiError(403, "permission_denied", "The token lacks the "
                           f"{manage_collections_scope()} scope")

    def get_collection(self, request: Request, endpoint: str, collection: str) -> Response:
        self._check(request, endpoint)
        return Response(200, result([self.collection_document(request, collection)]))

    def collection_document(self, request: Request, collection: str) -> dict[str, Any]:
        collection = collection_id(collection)
        flags = self.emulator.collection_flags(collection)
        host = request.headers.get("host", "127.0.0.1")
        guest = bool(flags.get("guest"))
        document: dict[str, Any] = {
            "DATA_TYPE": "collection#1.9.0", "id": collection,
            "display_name": f"Emulated collection {collection[:8]}",
            "collection_type": "guest" if guest else "mapped",
            "identity_id": self.emulator.auth.identity_id,
            "storage_gateway_id": STORAGE_GATEWAY_ID, "connector_id": POSIX_CONNECTOR,
            "collection_base_path": "/", "public": False, "organization": "Emulator",
            "description": "A directory of the Globus emulator",
            "high_assurance": bool(flags.get("high_assurance")),
            "authentication_timeout_mins": HIGH_ASSURANCE_TIMEOUT_MINUTES
            if flags.get("high_assurance") else DEFAULT_AUTHENTICATION_TIMEOUT,
            "require_mfa": False, "force_encryption": False, "disable_verify": False,
            "disable_anonymous_writes": False, "enable_https": not flags.get("no_https"),
            "https_url": https_server(flags, collection, host),
            "tlsftp_url": None,  # no GridFTP server here: Transfer moves the files itself
            "manager_url": gcs_manager_url(host),
            "policies": {"DATA_TYPE": "posix_collection_policies#1.1.0"},
        }
        if guest:
            document["mapped_collection_id"] = mapped_collection_of(collection)
        else:
            document["allow_guest_collections"] = True
        return document


def result(data: list[dict[str, Any]]) -> dict[str, Any]:
    """GCS's envelope around every answer."""
    return {"DATA_TYPE": "result#1.0.0", "code": "success", "detail": "success",
            "http_response_code": 200, "has_next_page": False, "data": data}
