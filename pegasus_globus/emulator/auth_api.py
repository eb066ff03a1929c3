"""Emulated Globus Auth API routes beyond OAuth2: client templating (globus-cli registers a
confidential client of its own at login), token validation, identities and consents.

Consents are recorded at every authorization-code login: one node per scope of the granted
scope tree, ``dependency_path`` the ids from the root, as Globus Auth lists them and as
globus-sdk's ``ConsentForest`` reads them to decide whether a collection's data_access was
given under Transfer (or under Timers' Transfer).
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any, Callable

from globus_sdk.scopes import ScopeParser

from .clock import iso
from .errors import ApiError
from .web import Request, Response, Route


class AuthApi:
    """:param identity: the emulated user's identity document
    :param check: the live token record behind a request, for a resource server, or a 401
    """

    def __init__(self, state: dict[str, Any], identity: Callable[[], dict[str, Any]],
                 check: Callable[[Request, str], dict[str, Any]]) -> None:
        self.state = state
        self.identity = identity
        self.check = check

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v2/api/clients", self.create_client),
            Route("DELETE", "/v2/api/clients/{client_id}", self.delete_client),
            Route("POST", "/v2/oauth2/token/validate", self.validate),
            Route("GET", "/v2/api/identities", self.identities),
            Route("GET", "/v2/api/identities/{identity_id}/consents", self.consents),
        ]

    # -- clients -------------------------------------------------------------------------------

    def create_client(self, request: Request) -> Response:
        """A confidential client made from a template (globus-cli's ``login``), or a new
        public one; answers its credential under ``included`` as Globus Auth does."""
        spec = request.json().get("client")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ApiError(400, "BAD_REQUEST", "client.name is required")
        client_id, secret = self.register(spec["name"])
        templated = bool(spec.get("template_id"))
        document = {"id": client_id, "name": spec["name"], "public_client": not templated,
                    "client_type": "client_identity" if templated
                    else "public_installed_client",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "parent_client": None, "redirect_uris": [], "scopes": [], "fqdns": []}
        answer: dict[str, Any] = {"client": document}
        if templated or spec.get("public_client") is False:
            answer["included"] = {"client_credential": {
                "client": client_id, "secret": secret, "id": str(uuid.uuid4()),
                "name": "auto-created at client creation", "created": iso(time.time())}}
        return Response(200, answer)

    def delete_client(self, request: Request, client_id: str) -> Response:
        basic = request.basic_auth()
        with self.state.lock:
            client = self.state["clients"].get(client_id)
            if client is None or not basic or basic != (client_id, client["secret"]):
                raise ApiError(401, "UNAUTHORIZED", "Invalid client credentials")
            del self.state["clients"][client_id]
            self.state.mark_dirty()
        return Response(200, {"client": {"id": client_id, "name": client["name"]}})

    def check_client(self, client_id: str, secret: str | None) -> None:
        """A confidential client must be one registered here (``POST /v2/api/clients``) and
        present its secret; a client without a secret is a native app (Pegasus', the SDK's),
        which any id may be."""
        client = self.state["clients"].get(client_id)
        if client is None and secret:
            raise ApiError(401, "invalid_client", f"Unknown client {client_id}: register it "
                           "with POST /v2/api/clients")
        if client is not None and not secrets.compare_digest(secret or "", client["secret"]):
            raise ApiError(401, "invalid_client", "Invalid client credentials")

    def register(self, name: str) -> tuple[str, str]:
        """A new confidential client: (client id, secret)."""
        client_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(32)
        with self.state.lock:
            self.state["clients"][client_id] = {"name": name, "secret": secret,
                                                "template_id": None}
            self.state.mark_dirty()
        return client_id, secret

    # -- tokens, identities, consents ----------------------------------------------------------

    def validate(self, request: Request) -> Response:
        form = request.form()
        basic = request.basic_auth()
        self.check_client(basic[0] if basic else form.get("client_id", ""),
                          basic[1] if basic else None)
        token = form.get("token", "")
        record = self.state["tokens"].get(token) or self.state["refresh_tokens"].get(token)
        active = bool(record) and not record["revoked"] and record.get(
            "expires_at", float("inf")) > time.time()
        return Response(200, {"active": active})

    def identities(self, request: Request) -> Response:
        self.check(request, "auth.globus.org")
        identity = self.identity()
        wanted_ids = {i for i in (request.arg("ids") or "").split(",") if i}
        wanted_names = {u.lower() for u in (request.arg("usernames") or "").split(",") if u}
        matched = identity["id"] in wanted_ids or identity["username"] in wanted_names
        public = {key: identity[key] for key in ("id", "username", "name", "email",
                                                 "identity_provider", "organization", "status")}
        return Response(200, {"identities": [public] if matched else []})

    def consents(self, request: Request, identity_id: str) -> Response:
        self.check(request, "auth.globus.org")
        if identity_id != self.identity()["id"]:
            raise ApiError(403, "FORBIDDEN", "You may only see your own consents")
        return Response(200, {"consents": list(self.state["consents"].values())})

    def record_consents(self, client_id: str, scope: str) -> None:
        """Remember the scope tree a user just approved, node by node."""
        def add(node: Any, path: list[int]) -> None:
            with self.state.lock:
                existing = next((c for c in self.state["consents"].values()
                                 if c["scope_name"] == node.scope_string
                                 and c["dependency_path"][:-1] == path
                                 and c["client"] == client_id), None)
                if existing is None:
                    number = len(self.state["consents"]) + 1
                    now = iso(time.time())
                    existing = self.state["consents"][str(number)] = {
                        "id": number, "status": "approved", "allows_refresh": True,
                        "dependency_path": [*path, number], "scope_name": node.scope_string,
                        "scope": str(uuid.uuid5(uuid.NAMESPACE_URL, node.scope_string)),
                        "effective_identity": self.identity()["id"], "client": client_id,
                        "atomically_revocable": bool(path), "auto_approved": False,
                        "created": now, "updated": now, "last_used": now}
                    self.state.mark_dirty()
            for child in node.dependencies:
                add(child, existing["dependency_path"])

        for root in ScopeParser.parse(scope):
            add(root, [])
