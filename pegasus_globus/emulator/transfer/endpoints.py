"""Transfer's endpoint documents: what clients read about a collection (its kind, whether it
needs a data_access consent, its HTTPS server), and the activation globus-sdk 3 still asks for."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from ..auth import TRANSFER_RS
from ..gcs import (
    ENDPOINT_ID,
    HIGH_ASSURANCE_TIMEOUT_MINUTES,
    gcs_manager_url,
    mapped_collection_of,
)
from ..https import https_server
from ..paths import collection_id
from ..web import Request, Response, Route

if TYPE_CHECKING:
    from ..host import Host


class EndpointService:
    def __init__(self, emulator: Host) -> None:
        self.emulator = emulator

    def routes(self) -> list[Route]:
        v = "/v0.10/endpoint/{endpoint_id}"
        return [Route("GET", v, self.get_endpoint),
                Route("POST", f"{v}/autoactivate", self.autoactivate)]

    def get_endpoint(self, request: Request, endpoint_id: str) -> Response:
        self.emulator.auth.check(request, TRANSFER_RS)
        endpoint = collection_id(endpoint_id)
        flags = self.emulator.collection_flags(endpoint)
        auth = self.emulator.auth
        host = mapped_collection_of(endpoint) if flags.get("guest") else None
        address = request.headers.get("host", "127.0.0.1")
        document = {
            "DATA_TYPE": "endpoint", "id": endpoint,
            "display_name": f"Emulated collection {endpoint[:8]}", "organization": "Emulator",
            "username": "u_emulator", "description": "A directory of the Globus emulator",
            # what clients read to decide whether data_access must be consented: a mapped
            # GCSv5 collection needs it, a guest collection has none
            "entity_type": "GCSv5_guest_collection" if flags.get("guest")
            else "GCSv5_mapped_collection",
            "high_assurance": bool(flags.get("high_assurance")),
            "authentication_timeout_mins": HIGH_ASSURANCE_TIMEOUT_MINUTES
            if flags.get("high_assurance") else None,
            # a GCSv5 collection's owner is its endpoint (globus-cli finds the endpoint by
            # it); the owner string is what the endpoint advertises
            "gcs_version": "5.4.87", "owner_id": ENDPOINT_ID, "owner_string": auth.username,
            "https_server": https_server(flags, endpoint, address),
            "gcs_manager_url": gcs_manager_url(address), "public": False,
            "french_english_bilingual": False, "is_globus_connect": False,
            "globus_connect_setup_key": None, "gcp_connected": None, "gcp_paused": None,
            "s3_url": None, "s3_owner_activated": False,
            # a guest collection is made on a mapped one; the legacy Timer CLI asks data_access
            # only where this is null
            "host_endpoint": host, "host_endpoint_id": host,
            "host_path": None, "disable_verify": False, "disable_anonymous_writes": False,
            "force_verify": False, "force_encryption": False, "mfa_required": False,
            "myproxy_server": None, "myproxy_dn": None, "non_functional": False,
            "non_functional_endpoint_display_name": None, "non_functional_endpoint_id": None,
            "oauth_server": None, "default_directory": "/~/", "activated": True,
            "expires_in": -1, "expire_time": None, "shareable": False, "acl_available": False,
            "acl_editable": False, "in_use": False,
            "DATA": [{"DATA_TYPE": "server", "hostname": "127.0.0.1", "uri":
                      "gsiftp://127.0.0.1:2811", "port": 2811, "scheme": "gsiftp", "id": 1,
                      "subject": None}],
        }
        if endpoint == ENDPOINT_ID:  # the GCS endpoint itself, which holds no data
            document.update({"entity_type": "GCSv5_endpoint", "display_name": "Emulated GCS "
                             "endpoint", "owner_string": f"{ENDPOINT_ID}@clients.auth.globus.org",
                             "https_server": None, "non_functional": True,
                             "host_endpoint": None, "host_endpoint_id": None})
        return Response(200, document)

    def autoactivate(self, request: Request, endpoint_id: str) -> Response:
        """Removed from globus-sdk 4, still called by globus-sdk 3 (stock Pegasus 5.1)."""
        self.emulator.auth.check(request, TRANSFER_RS)
        endpoint = collection_id(endpoint_id)
        return Response(200, {
            "DATA_TYPE": "activation_result", "code": "AlreadyActivated",
            "message": "Endpoint is already activated.", "endpoint": endpoint,
            "expires_in": -1, "expire_time": None, "length": 0, "DATA": [],
            "request_id": uuid.uuid4().hex[:9], "resource": request.path,
        })
