"""A refresh-token authorizer that loads globus-sdk's Auth client only when it must refresh.

``globus_sdk.RefreshTokenAuthorizer`` needs a ``NativeAppAuthClient`` built up front, whose
import (PyJWT and cryptography, for ID tokens) costs about 80 ms: a third of a handler run
that moves one small file. Most runs never refresh: the token at hand is still good.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from globus_sdk.authorizers import GlobusAuthorizer

EXPIRY_MARGIN = 60  # seconds; globus-sdk's RenewingAuthorizer.EXPIRES_ADJUST_SECONDS


class LazyRefreshAuthorizer(GlobusAuthorizer):
    """Behaves as ``RefreshTokenAuthorizer(refresh_token, NativeAppAuthClient(client_id),
    access_token=..., expires_at=..., on_refresh=...)``, which it builds (and then defers to)
    the first time the access token is missing, near its expiry, or rejected by a service."""

    def __init__(self, refresh_token: str, client_id: str, access_token: str | None = None,
                 expires_at: int | None = None,
                 on_refresh: Callable[[Any], Any] | None = None) -> None:
        self.refresh_token = refresh_token
        self._client_id = client_id
        self._access_token = access_token
        self._expires_at = expires_at
        self._on_refresh = on_refresh
        self._real: GlobusAuthorizer | None = None
        self._lock = threading.Lock()  # one refresh, whichever thread asks first

    def _refreshing(self) -> GlobusAuthorizer:
        with self._lock:
            if self._real is None:
                import globus_sdk

                self._real = globus_sdk.RefreshTokenAuthorizer(
                    self.refresh_token, globus_sdk.NativeAppAuthClient(self._client_id),
                    access_token=self._access_token, expires_at=self._expires_at,
                    on_refresh=self._on_refresh)
            return self._real

    def get_authorization_header(self) -> str | None:
        if (self._real is None and self._access_token and self._expires_at
                and time.time() <= self._expires_at - EXPIRY_MARGIN):
            return f"Bearer {self._access_token}"
        return self._refreshing().get_authorization_header()

    def handle_missing_authorization(self) -> bool:
        return self._refreshing().handle_missing_authorization()
