"""OpenID Connect for the emulated Globus Auth: a signing key, its JWK set, the discovery
document and signed ID tokens, so globus-cli's ``login`` and globus-sdk's ``GlobusApp``
(which verify the ID token's signature) log in as they do against Globus.

The key is made once per process (RSA 2048, about 50 ms, on first use) and never saved: a
client that cached the JWK set of an earlier emulator run fetches it again on a mismatch.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

ISSUER = "https://auth.globus.org"  # what Globus Auth puts in "iss"
ALGORITHM = "RS512"  # Globus Auth's id_token_signing_alg_values_supported
KEY_ID = "emulator-1"
ID_TOKEN_LIFETIME = 172800  # seconds, as Globus Auth issues them

_lock = threading.Lock()
_key: Any = None


def _private_key() -> Any:
    global _key
    with _lock:
        if _key is None:
            from cryptography.hazmat.primitives.asymmetric import rsa

            _key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _key


def jwk_set() -> dict[str, Any]:
    """``GET /jwk.json``: the public key clients verify ID tokens with."""
    from jwt.algorithms import RSAAlgorithm

    jwk = json.loads(RSAAlgorithm.to_jwk(_private_key().public_key()))
    return {"keys": [{**jwk, "alg": ALGORITHM, "use": "sig", "kid": KEY_ID}]}


def discovery(base_url: str) -> dict[str, Any]:
    """``GET /.well-known/openid-configuration``, with this emulator's endpoints."""
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{base_url}v2/oauth2/authorize",
        "token_endpoint": f"{base_url}v2/oauth2/token",
        "userinfo_endpoint": f"{base_url}v2/oauth2/userinfo",
        "revocation_endpoint": f"{base_url}v2/oauth2/token/revoke",
        "jwks_uri": f"{base_url}jwk.json",
        "response_types_supported": ["code", "token", "token id_token", "id_token"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "claims_supported": ["at_hash", "aud", "email", "exp", "name", "nonce",
                             "preferred_username", "iat", "iss", "sub"],
        "subject_types_supported": ["public"],
    }


def id_token(client_id: str, identity: dict[str, Any], access_token: str,
             scopes: list[str]) -> str:
    """A signed ID token for ``identity``, with the claims the granted scopes allow."""
    import base64
    import hashlib

    import jwt

    now = int(time.time())
    digest = hashlib.sha512(access_token.encode()).digest()
    claims: dict[str, Any] = {
        "iss": ISSUER, "sub": identity["sub"], "aud": client_id, "iat": now,
        "exp": now + ID_TOKEN_LIFETIME, "last_authentication": now,
        "at_hash": base64.urlsafe_b64encode(digest[:len(digest) // 2]).rstrip(b"=").decode(),
        "identity_provider": identity["identity_provider"],
        "identity_provider_display_name": identity["identity_provider_display_name"],
        "organization": identity["organization"],
        "identity_set": [identity],
    }
    if "profile" in scopes:
        claims.update(name=identity["name"], preferred_username=identity["username"])
    if "email" in scopes:
        claims["email"] = identity["email"]
    return jwt.encode(claims, _private_key(), algorithm=ALGORITHM, headers={"kid": KEY_ID})
