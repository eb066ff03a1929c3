"""Emulated Globus Auth: OAuth2 with PKCE, refresh tokens, scopes with dependencies."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
import time
import uuid
from typing import Any

from globus_sdk.scopes import ScopeParser

from . import oidc
from .auth_api import AuthApi
from .errors import ApiError
from .web import Request, Response, Route

AUTH_RS = "auth.globus.org"
TRANSFER_RS = "transfer.api.globus.org"
TIMERS_RS = "524230d7-ea86-4a52-8312-86065a9e0417"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"
TIMERS_SCOPE = f"https://auth.globus.org/scopes/{TIMERS_RS}/timer"
IDENTITY_SCOPES = {"openid", "profile", "email", "offline_access"}
CODE_LIFETIME = 600
_DATA_ACCESS = re.compile(r"https://auth\.globus\.org/scopes/([0-9a-fA-F-]{36})/data_access")


def data_access_scope(collection: str) -> str:
    return f"https://auth.globus.org/scopes/{collection}/data_access"


def granted_data_access(scopes: list[str]) -> set[str]:
    """Collections whose data_access consent appears anywhere in these scope strings."""
    return {match.lower() for text in scopes for match in _DATA_ACCESS.findall(text)}


def resource_server_of(scope: str) -> str:
    """The resource server a scope string belongs to, as Globus Auth derives it."""
    if scope in IDENTITY_SCOPES or scope.startswith("urn:globus:auth:scope:auth.globus.org:"):
        return AUTH_RS
    urn = re.fullmatch(r"urn:globus:auth:scope:([^:]+):.+", scope)
    if urn:
        return urn.group(1)
    url = re.fullmatch(r"https://auth\.globus\.org/scopes/([^/]+)/.+", scope)
    if url:
        return url.group(1)
    raise ApiError(400, "invalid_scope", f"Unknown scope '{scope}'")


class AuthService:
    """Issues and checks tokens. One emulated user, ``user@example.org``, approves everything."""

    username = "user@example.org"

    def __init__(self, state: dict[str, Any], settings: dict[str, Any]) -> None:
        self.state = state
        self.settings = settings
        self.identity_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"emulator:{self.username}"))
        self.api = AuthApi(state, self.identity, self.check)

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/v2/oauth2/authorize", self.authorize),
            Route("GET", "/v2/web/auth-code", self.show_code),
            Route("POST", "/v2/oauth2/token", self.token),
            Route("POST", "/v2/oauth2/token/revoke", self.revoke),
            Route("POST", "/v2/oauth2/token/introspect", self.introspect),
            Route("GET", "/v2/oauth2/userinfo", self.userinfo),
            Route("GET", "/.well-known/openid-configuration", self.openid_configuration),
            Route("GET", "/jwk.json", self.jwks),
            *self.api.routes(),
        ]

    # -- checking tokens, for the other services -------------------------------------------

    def check(self, request: Request, resource_server: str) -> dict[str, Any]:
        """The live token record behind the request's bearer token, or a 401."""
        token = request.bearer_token()
        record = self.state["tokens"].get(token) if token else None
        # each service's own word for it: Auth's API answers UNAUTHORIZED, Transfer's
        # AuthenticationFailed (Timers' 401s are not recorded; they take Transfer's)
        code = "UNAUTHORIZED" if resource_server == AUTH_RS else "AuthenticationFailed"
        if record is None or record["revoked"] or record["resource_server"] != resource_server:
            raise ApiError(401, code, "Call must be authenticated" if code == "UNAUTHORIZED"
                           else "Token is not active")
        if record["expires_at"] <= time.time():
            raise ApiError(401, code, "Token is not active (expired)")
        return record

    # -- routes ------------------------------------------------------------------------------

    def authorize(self, request: Request) -> Response:
        client_id = request.arg("client_id")
        scope = request.arg("scope")
        if not client_id or not scope:
            raise ApiError(400, "invalid_request", "client_id and scope are required")
        challenge = request.arg("code_challenge")
        if challenge and request.arg("code_challenge_method", "S256") != "S256":
            raise ApiError(400, "invalid_request", "Only code_challenge_method=S256 is supported")
        for each in ScopeParser.parse(scope):
            resource_server_of(each.scope_string)
            self._refuse_guest_data_access(each)
        code = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state["codes"][code] = {
                "client_id": client_id,
                "scope": scope,
                "challenge": challenge,
                "redirect_uri": request.arg("redirect_uri"),
                "offline": request.arg("access_type") == "offline",
                "expires_at": time.time() + CODE_LIFETIME,
                # the user authenticates here: the session's time, which high-assurance
                # collections compare with their authentication timeout
                "auth_time": time.time(),
            }
            self.state.mark_dirty()
        return self._code_page(request, code)

    def _refuse_guest_data_access(self, scope: Any) -> None:
        """As Auth does: a guest collection has no data_access scope to consent to."""
        match = re.fullmatch(r"https://auth\.globus\.org/scopes/([^/]+)/data_access",
                             scope.scope_string)
        if match and self.state["collections"].get(match.group(1).lower(), {}).get("guest"):
            raise ApiError(400, "invalid_scope", f"Unknown scope '{scope.scope_string}': "
                           f"{match.group(1)} is a guest collection, without data_access")
        for dependency in scope.dependencies:
            self._refuse_guest_data_access(dependency)

    def show_code(self, request: Request) -> Response:
        return self._code_page(request, request.arg("code", ""))

    def _code_page(self, request: Request, code: str) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            return Response(200, {"code": code, "state": request.arg("state", "_default")})
        page = (
            "<!doctype html><title>Globus emulator: authorization code</title>"
            "<h1>Access approved</h1><p>Copy this code into the program that asked for it:</p>"
            f"<pre id='code'>{html.escape(code)}</pre>"
        )
        return Response(200, page, content_type="text/html; charset=utf-8")

    def token(self, request: Request) -> Response:
        form = request.form()
        grant = form.get("grant_type")
        basic = request.basic_auth()
        client_id = basic[0] if basic else form.get("client_id")
        if not client_id:
            raise ApiError(401, "invalid_client", "No client id given")
        self.api.check_client(client_id, basic[1] if basic else None)
        sub, auth_time = self.identity_id, time.time()
        if grant == "authorization_code":
            # an empty secret is no secret: a native app still proves the code with PKCE
            scope, offline, auth_time = self._redeem_code(form, client_id,
                                                          confidential=bool(basic and basic[1]))
            self.api.record_consents(client_id, scope)
        elif grant == "refresh_token":
            return Response(200, self._refresh(form.get("refresh_token", ""), client_id))
        elif grant == "client_credentials":
            if not basic or not basic[1]:
                raise ApiError(401, "invalid_client", "Client credentials require a client secret")
            scope, offline = form.get("scope", ""), False
            sub = client_id  # a client acts as its own identity, never as the user
        else:
            raise ApiError(400, "unsupported_grant_type", f"Unsupported grant_type '{grant}'")
        tokens = self._issue(client_id, scope, offline, sub, auth_time)
        # Globus answers Auth's own token at the top, with the ID token when openid was asked
        tokens.sort(key=lambda token: token["resource_server"] != AUTH_RS)
        first, *others = tokens
        answer = {**first, "state": form.get("state", "_default"), "other_tokens": others}
        granted = first["scope"].split()
        if first["resource_server"] == AUTH_RS and "openid" in granted:
            answer["id_token"] = oidc.id_token(client_id, self.identity_of(sub),
                                               first["access_token"], granted)
        return Response(200, answer)

    def _redeem_code(self, form: dict[str, str], client_id: str,
                     confidential: bool) -> tuple[str, bool, float]:
        """The scope, offline flag and authentication time of a code, for the client it was
        issued to. A native app (no secret) must prove the code is its own with PKCE; a
        ``redirect_uri`` given at authorize must be given again, the same."""
        with self.state.lock:
            grant = self.state["codes"].pop(form.get("code", ""), None)
            self.state.mark_dirty()
        if grant is None or grant["expires_at"] < time.time() or grant["client_id"] != client_id:
            raise ApiError(401, "invalid_grant", "Invalid or expired authorization code")
        if grant["redirect_uri"] and form.get("redirect_uri") != grant["redirect_uri"]:
            raise ApiError(401, "invalid_grant", "redirect_uri does not match the authorization")
        if not grant["challenge"] and not confidential:
            raise ApiError(401, "invalid_grant", "A native app must use PKCE (code_challenge)")
        if grant["challenge"]:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not secrets.compare_digest(expected, grant["challenge"]):
                raise ApiError(401, "invalid_grant", "PKCE code_verifier does not match")
        return grant["scope"], grant["offline"], grant.get("auth_time", time.time())

    def _issue(self, client_id: str, scope: str, offline: bool, sub: str,
               auth_time: float) -> list[dict[str, Any]]:
        by_server: dict[str, list[Any]] = {}
        for each in ScopeParser.parse(scope):
            by_server.setdefault(resource_server_of(each.scope_string), []).append(each)
        if not by_server:
            raise ApiError(400, "invalid_scope", "No scope requested")
        return [
            self._new_token(client_id, server, [str(s) for s in scopes], offline, sub=sub,
                            auth_time=auth_time)
            for server, scopes in by_server.items()
        ]

    def _new_token(self, client_id: str, server: str, scopes: list[str], offline: bool,
                   refresh_token: str | None = None, sub: str | None = None,
                   auth_time: float = 0.0) -> dict[str, Any]:
        lifetime = self.settings["token_lifetime"]
        access_token = secrets.token_urlsafe(32)
        if offline and refresh_token is None:
            refresh_token = secrets.token_urlsafe(32)
        with self.state.lock:
            self.state["tokens"][access_token] = {
                "client_id": client_id, "resource_server": server, "scopes": scopes,
                "sub": sub or self.identity_id, "issued_at": time.time(),
                "expires_at": time.time() + lifetime, "revoked": False,
                "refresh_token": refresh_token, "auth_time": auth_time,
            }
            if refresh_token:
                self.state["refresh_tokens"].setdefault(refresh_token, {
                    "client_id": client_id, "resource_server": server, "scopes": scopes,
                    "revoked": False, "auth_time": auth_time,
                })
            self.state.mark_dirty()
        answer = {
            "access_token": access_token,
            "expires_in": int(lifetime),
            "resource_server": server,
            # Globus Auth names the granted scopes without their dependencies
            "scope": " ".join(each.scope_string for each in ScopeParser.parse(" ".join(scopes))),
            "token_type": "Bearer",
        }
        if refresh_token:
            answer["refresh_token"] = refresh_token
        return answer

    def _refresh(self, refresh_token: str, client_id: str) -> dict[str, Any]:
        grant = self.state["refresh_tokens"].get(refresh_token)
        if grant is None or grant["revoked"] or grant["client_id"] != client_id:
            raise ApiError(401, "invalid_grant", "Invalid refresh token")
        # a refresh is no authentication: the new token keeps the session's time
        token = self._new_token(client_id, grant["resource_server"], grant["scopes"], True,
                                refresh_token=refresh_token, auth_time=grant.get("auth_time", 0.0))
        return {**token, "state": "_default", "other_tokens": []}

    def revoke(self, request: Request) -> Response:
        """RFC 7009, as Globus Auth has it: the client says who it is, a confidential one with
        its secret (HTTP Basic), a native app with its ``client_id``; an unknown token is no
        error."""
        form = request.form()
        basic = request.basic_auth()
        client_id = basic[0] if basic else form.get("client_id")
        if not client_id:
            raise ApiError(401, "invalid_client", "Revoking a token needs the client's "
                           "credentials (HTTP Basic) or, for a native app, its client_id")
        self.api.check_client(client_id, basic[1] if basic else None)
        token = form.get("token", "")
        with self.state.lock:
            if token in self.state["tokens"]:
                self.state["tokens"][token]["revoked"] = True
            if token in self.state["refresh_tokens"]:
                self.state["refresh_tokens"][token]["revoked"] = True
                for record in self.state["tokens"].values():
                    if record["refresh_token"] == token:
                        record["revoked"] = True
            self.state.mark_dirty()
        return Response(200, {"active": False})

    def introspect(self, request: Request) -> Response:
        basic = request.basic_auth()  # only a confidential client may introspect
        if not basic:
            raise ApiError(401, "invalid_client", "Introspection needs client credentials")
        self.api.check_client(*basic)
        record = self.state["tokens"].get(request.form().get("token", ""))
        if record is None or record["revoked"] or record["expires_at"] <= time.time():
            return Response(200, {"active": False})
        return Response(200, {
            "active": True, "token_type": "Bearer",
            "scope": " ".join(record["scopes"]), "client_id": record["client_id"],
            "username": self.username, "name": "Emulated User", "email": self.username,
            "exp": int(record["expires_at"]), "iat": int(record["issued_at"]),
            "nbf": int(record["issued_at"]), "sub": record["sub"],
            "aud": [record["resource_server"], record["client_id"]],
            "iss": "https://auth.globus.org",
        })

    def session_expired(self, record: dict[str, Any], timeout_minutes: float) -> bool:
        """Whether the login behind a token is older than ``timeout_minutes`` (a
        high-assurance collection's authentication timeout)."""
        return time.time() - record.get("auth_time", 0.0) > timeout_minutes * 60

    def expire_sessions(self) -> int:
        """Make every session older than any timeout, as if the user logged in long ago."""
        with self.state.lock:
            for section in ("tokens", "refresh_tokens"):
                for record in self.state[section].values():
                    record["auth_time"] = 0.0
            self.state.mark_dirty()
            return len(self.state["refresh_tokens"]) + len(self.state["tokens"])

    def identity(self) -> dict[str, Any]:
        """The emulated user's identity, as Auth's identity documents give it."""
        return {
            "sub": self.identity_id, "id": self.identity_id, "username": self.username,
            "name": "Emulated User", "email": self.username, "status": "used",
            "identity_provider": str(uuid.uuid5(uuid.NAMESPACE_DNS, "example.org")),
            "identity_provider_display_name": "Globus emulator", "organization": "Emulator",
        }

    def identity_of(self, sub: str) -> dict[str, Any]:
        """The identity behind a token's ``sub``: the user's, or a client's own (a client
        acting as itself with client credentials, never as the user)."""
        identity = self.identity()
        if sub == self.identity_id:
            return identity
        return {**identity, "sub": sub, "id": sub, "username": f"{sub}@clients.auth.globus.org",
                "name": None, "email": None}

    def userinfo(self, request: Request) -> Response:
        record = self.check(request, AUTH_RS)
        # when the session's user last authenticated, as Globus Auth's userinfo says
        identity = {**self.identity_of(record["sub"]),
                    "last_authentication": int(record.get("auth_time", 0))}
        return Response(200, {**identity, "preferred_username": identity["username"],
                              "identity_set": [identity]})

    def openid_configuration(self, request: Request) -> Response:
        host = request.headers.get("host", "127.0.0.1")
        return Response(200, oidc.discovery(f"http://{host}/"))

    def jwks(self, request: Request) -> Response:
        return Response(200, oidc.jwk_set())
