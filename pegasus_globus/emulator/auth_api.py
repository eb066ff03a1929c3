"""Emulated Globus Auth API routes beyond OAuth2: client templating (globus-cli registers a
confidential client of its own at login), token validation, identities and consents.

Registering a client needs a user's token with the ``manage_projects`` scope, as Globus Auth
asks, except an instance of a native app made from its template (``template_id``), which the app
(globus-cli's ``login``, ``NativeAppAuthClient.create_native_app_instance``) asks for without
credentials, having none. An instance's secret is derived from its id, so the instance a
globus-cli login made keeps working with an emulator started on another ``--root``.

Consents are recorded at every authorization-code login: one node per scope of the granted
scope tree, ``dependency_path`` the ids from the root, as Globus Auth lists them and as
globus-sdk's ``ConsentForest`` reads them to decide whether a collection's data_access was
given under Transfer (or under Timers' Transfer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any, Callable

from globus_sdk.scopes import ScopeParser

from .clock import iso
from .errors import ApiError
from .web import Request, Response, Route

MANAGE_PROJECTS_SCOPE = "urn:globus:auth:scope:auth.globus.org:manage_projects"
# Not a secret: the emulator approves every login without a password. It makes an app
# instance's credentials checkable without the state that recorded them.
_INSTANCE_KEY = b"pegasus-globus-emulator: native app instances"


def instance_secret(client_id: str) -> str:
    """The secret of the native app instance ``client_id``."""
    digest = hmac.new(_INSTANCE_KEY, client_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


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
        one for a user allowed to manage projects; answers its credential under ``included``
        as Globus Auth does."""
        spec = request.json().get("client")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ApiError(400, "BAD_REQUEST", "client.name is required")
        templated = bool(spec.get("template_id"))
        if templated:
            template = str(spec["template_id"])
            try:
                uuid.UUID(template)
            except ValueError:
                raise ApiError(400, "BAD_REQUEST", f"template_id {template!r} is not a "
                               "client id") from None
            if template in self.state["clients"]:
                raise ApiError(400, "BAD_REQUEST", f"Client {template} is not a native app: "
                               "it cannot be a template")
            client_id = str(uuid.uuid4())
            secret = self._remember(client_id, spec["name"], instance_secret(client_id),
                                    template_id=template)
        else:
            token = self.check(request, "auth.globus.org")
            if MANAGE_PROJECTS_SCOPE not in token["scopes"]:
                raise ApiError(403, "FORBIDDEN", "Registering a client needs a token with "
                               f"the {MANAGE_PROJECTS_SCOPE} scope")
            client_id, secret = self.register(spec["name"])
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
            if client is None or not client["secret"] or not basic or basic != (
                    client_id, client["secret"]):
                raise ApiError(401, "UNAUTHORIZED", "Invalid client credentials")
            # kept without a secret: a deleted instance's derived secret no longer works here
            self.state["clients"][client_id] = {**client, "secret": None}
            self.state.mark_dirty()
        return Response(200, {"client": {"id": client_id, "name": client["name"]}})

    def check_client(self, client_id: str, secret: str | None) -> None:
        """A confidential client must be one registered here (``POST /v2/api/clients``), or
        a native app instance made by an emulator with other state, and present its secret;
        a client without a secret is a native app (Pegasus', the SDK's), which any id may be."""
        client = self.state["clients"].get(client_id)
        if client is None and secret and secrets.compare_digest(
                secret, instance_secret(client_id)):
            self._remember(client_id, "native app instance", secret, template_id="unknown")
            return
        if client is None and secret:
            raise ApiError(401, "invalid_client", f"Unknown client {client_id}: register it "
                           "with POST /v2/api/clients")
        if client is not None and not secrets.compare_digest(secret or "",
                                                             client.get("secret") or ""):
            raise ApiError(401, "invalid_client", "Invalid client credentials")

    def register(self, name: str) -> tuple[str, str]:
        """A new confidential client: (client id, secret)."""
        client_id = str(uuid.uuid4())
        return client_id, self._remember(client_id, name, secrets.token_urlsafe(32))

    def _remember(self, client_id: str, name: str, secret: str,
                  template_id: str | None = None) -> str:
        with self.state.lock:
            self.state["clients"][client_id] = {"name": name, "secret": secret,
                                                "template_id": template_id}
            self.state.mark_dirty()
        return secret

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
