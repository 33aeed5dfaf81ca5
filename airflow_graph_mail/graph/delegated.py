"""Delegated access: a user's refresh token -> tokens for /me, for tenants that allow no app permissions.

Entra answers every refresh with a new (rotated) refresh token. It stays in MSAL's in-memory cache for
this process, and is written to disk only when the connection names a ``token_cache_path``: then later
runs start from the newest token instead of the one stored in the connection. It is never logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow_graph_mail.errors import GraphConfigError
from airflow_graph_mail.graph.auth import TokenCredential


class RefreshTokenCredential(TokenCredential):
    kind = "delegated (refresh token)"

    def __init__(self, session, scopes: list[str], *, authority: str, client_id: str, refresh_token: str,
                 client_secret: str | None = None, cache_path: str | None = None):
        super().__init__(session, " ".join(scopes))
        self.scopes = scopes
        self.authority, self.client_id = authority, client_id
        self._refresh_token, self._client_secret = refresh_token, client_secret
        self.cache_path = Path(cache_path).expanduser() if cache_path else None

    def describe(self) -> str:
        where = f"rotated tokens kept in {self.cache_path}" if self.cache_path else "rotated tokens kept in memory"
        return f"{self.kind}, client id {self.client_id}, {where}"

    def _application(self):
        import msal

        cache = msal.SerializableTokenCache()
        if self.cache_path and self.cache_path.exists():
            try:
                cache.deserialize(self.cache_path.read_text())
            except ValueError:
                raise GraphConfigError(f"token_cache_path: {str(self.cache_path)!r} is not an MSAL token cache; "
                                       "delete it to start again from the connection's refresh_token") from None
        options = {"authority": self.authority, "http_client": self.session, "instance_discovery": False,
                   "token_cache": cache}
        if self._client_secret:
            return msal.ConfidentialClientApplication(self.client_id, client_credential=self._client_secret,
                                                      **options)
        return msal.PublicClientApplication(self.client_id, **options)

    def _acquire(self) -> dict:
        if self._msal is None:
            self._msal = self._application()
        result = None
        accounts = self._msal.get_accounts()
        if accounts:  # the newest refresh token (ours or a cached one) first
            result = self._msal.acquire_token_silent_with_error(self.scopes, account=accounts[0])
        if not result or "access_token" not in result:
            result = self._msal.acquire_token_by_refresh_token(self._refresh_token, scopes=self.scopes)
        self._save()
        return result

    def _save(self) -> None:
        cache = self._msal.token_cache
        if self.cache_path is None or not cache.has_state_changed:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.cache_path.with_name(self.cache_path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only: it holds tokens
        with os.fdopen(descriptor, "w") as handle:
            handle.write(cache.serialize())
        os.replace(temporary, self.cache_path)
        cache.has_state_changed = False
