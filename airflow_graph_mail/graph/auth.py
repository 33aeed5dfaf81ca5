"""Credentials -> Graph bearer tokens through MSAL, over our own requests session (CA bundle, proxies).

One credential object per distinct configuration lives for the whole process (``shared``), so every hook,
operator and callback that signs in the same way shares one MSAL token cache: one token request, not one
per task or per hook.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from requests.exceptions import SSLError

from airflow_graph_mail.errors import GraphAuthError, GraphConfigError
from airflow_graph_mail.redact import redact_url_secrets

# AADSTS codes a user can act on, with the field to fix.
_AADSTS_HINTS = {
    "7000215": "the client secret is wrong: fix the connection's password",
    "7000222": "the client secret has expired: create a new one in Entra and update the connection's password",
    "700016": "no app with this client id in the tenant: check the connection's login (client id) and tenant_id",
    "90002": "tenant not found: check tenant_id",
    "700027": "the certificate assertion was refused: upload the certificate to the app registration, or "
              "trust its subject name and set certificate_send_x5c",
    "70021": "no federated credential on the app matches the token's issuer and subject: add one in Entra "
             "(Certificates & secrets > Federated credentials) or fix federated_token_file",
    "700212": "the federated token's audience is not one the app's federated credential accepts",
    "700024": "the client assertion or federated token has expired: the token file is not being refreshed",
    "50173": "the refresh token was revoked: sign the user in again and store the new refresh_token",
    "9002313": "the refresh token is not valid for this app: sign in again with this client id",
    "65001": "the user has not consented to the scopes: grant consent for Mail.Send/Mail.ReadWrite",
    "7000218": "this app needs a client secret or certificate to redeem a refresh token (or allow public "
               "client flows on the app registration)",
    "500011": "the resource was not found in the tenant: check graph_url / cloud",
}
_SHARED: dict[str, TokenCredential] = {}
_SHARED_LOCK = threading.Lock()


def _hint(description: str) -> str:
    for code, hint in _AADSTS_HINTS.items():
        if f"AADSTS{code}:" in (description or ""):
            return hint
    return ""


def shared(settings: dict, build) -> TokenCredential:
    """The process-wide credential for these settings (secrets included, hashed), built once."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = build()
        return _SHARED[key]


def granted_permissions(token: str) -> tuple[bool, list[str]] | None:
    """(delegated, permissions) from an access token's claims -- application ``roles`` or delegated
    ``scp`` -- read without verifying it (Graph verifies; we only report). None when the token is not a
    readable JWT."""
    import jwt  # PyJWT loads cryptography: only for a connection test

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    if "scp" in claims:
        return True, sorted(str(claims.get("scp") or "").split())
    return False, sorted(claims.get("roles") or [])


def auth_connection_error(err: OSError) -> GraphAuthError:
    """No answer from the sign-in endpoint: a TLS failure stays (fix the CA), a network failure may pass."""
    if isinstance(err, SSLError):
        return GraphAuthError("tls_error", redact_url_secrets(str(err)), "the sign-in endpoint's certificate is not "
                              "trusted: set ca_bundle to your CA's PEM file")
    return GraphAuthError("connection_error", redact_url_secrets(str(err)),
                          "check authority_url, proxies and the network")


def forget_shared() -> None:
    """Drop every shared credential (a test starting as a fresh process would)."""
    with _SHARED_LOCK:
        _SHARED.clear()


# A token is reused without asking MSAL until this long before it expires (or half its life, if shorter).
RENEW_BEFORE_EXPIRY = 300.0


class TokenCredential:
    """Base: one lock around MSAL (its caches are not thread-safe), errors turned into GraphAuthError.

    The last token is kept with the time to renew it: until then a request reads it without asking MSAL
    (whose cache lookup, with its lock, costs more than the rest of a send's own work)."""

    kind = "credential"

    def __init__(self, session, scope: str):
        self.session = session
        self.scope = scope
        self._lock = threading.Lock()
        self._msal: Any = None  # the MSAL application, made on first use (msal is imported only then)
        self.on_secret = None  # called with each new token, so that a log masker can hide it everywhere
        self._announced: dict[str, str] = {}  # the last token of each kind handed to on_secret
        self._current: tuple[str, float] | None = None  # (token, monotonic time to ask MSAL again)

    def __repr__(self) -> str:  # never the secret, key or token
        return f"{type(self).__name__}({self.describe()})"

    def describe(self) -> str:
        return self.kind

    def _acquire(self) -> dict:
        raise NotImplementedError

    def get_token(self) -> str:
        current = self._current
        if current is not None and time.monotonic() < current[1]:
            return current[0]
        with self._lock:
            try:
                result = self._acquire()
            except GraphConfigError:
                raise
            except ValueError as err:  # MSAL raises on a discovery document it cannot use
                raise GraphAuthError("authority_error", str(err), "check authority_url and tenant_id") from None
            except OSError as err:  # requests' connection and TLS errors, raised through MSAL
                raise auth_connection_error(err) from err
        if not result or "access_token" not in result:
            result = result or {}
            description = result.get("error_description", "") or "no token in the answer"
            raise GraphAuthError(result.get("error", "unknown_error"), description, _hint(description))
        if self.on_secret is not None:  # once per token: MSAL hands back the cached one on every request
            for name in ("access_token", "refresh_token"):  # a rotated refresh token comes back too
                value = result.get(name)
                if value and self._announced.get(name) != value:
                    self._announced[name] = value
                    self.on_secret(value)
        self._keep(result)
        return result["access_token"]

    def _keep(self, result: dict) -> None:
        """Remember the token until shortly before it expires, or until MSAL would refresh it (refresh_in)."""
        try:
            lifetime = float(result.get("expires_in") or 0)
            refresh_in = float(result.get("refresh_in") or lifetime)
        except (TypeError, ValueError):
            lifetime = refresh_in = 0.0
        fresh = min(lifetime - min(RENEW_BEFORE_EXPIRY, lifetime / 2), refresh_in)
        self._current = (result["access_token"], time.monotonic() + fresh) if fresh > 0 else None

    def invalidate(self) -> None:
        """Forget cached access tokens (after a 401), so the next call asks again."""
        self._current = None
        with self._lock:
            cache = getattr(self._msal, "token_cache", None) or getattr(self._msal, "_token_cache", None)
            if cache is not None:
                for token in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(token)


class AppCredential(TokenCredential):
    """App-only sign-in (client credentials) with a client secret, a certificate, or a federated token."""

    def __init__(self, session, scope: str, *, authority: str, client_id: str, client_secret: str | None = None,
                 certificate: dict | None = None, federated_token_file: str | None = None):
        super().__init__(session, scope)
        self.authority, self.client_id = authority, client_id
        self._credential: Any
        if federated_token_file:
            self.kind = "workload identity"
            self._credential = {"client_assertion": self._read_assertion}
        elif certificate:
            self.kind = "certificate"
            self._credential = certificate
        else:
            self.kind = "client secret"
            self._credential = client_secret
        self.federated_token_file = federated_token_file

    def describe(self) -> str:
        detail = {"certificate": f", thumbprint {str(self._credential.get('thumbprint', '')).upper()}"
                                 + (", x5c sent" if "public_certificate" in self._credential else "")
                  if isinstance(self._credential, dict) and self.kind == "certificate" else "",
                  "workload identity": f", token file {self.federated_token_file}"}.get(self.kind, "")
        return f"{self.kind}, client id {self.client_id}{detail}"

    def _read_assertion(self) -> str:
        """Read on every token request: the workload identity webhook rotates the file (about hourly)."""
        try:
            return Path(str(self.federated_token_file)).read_text().strip()
        except OSError as err:
            raise GraphConfigError(f"federated_token_file: cannot read {self.federated_token_file!r} "
                                   f"({err.strerror}); is the workload identity token projected here?") from None

    def _acquire(self) -> dict:
        if self._msal is None:
            import msal

            self._msal = msal.ConfidentialClientApplication(
                self.client_id, client_credential=self._credential, authority=self.authority,
                http_client=self.session, instance_discovery=False)
        return self._msal.acquire_token_for_client(scopes=[self.scope])


class ManagedIdentityCredential(TokenCredential):
    """The Azure host's managed identity (VM, AKS, App Service...): no secret anywhere.

    msal finds the endpoint from the environment the host sets (IMDS by default).
    """

    def __init__(self, session, scope: str, *, client_id: str | None = None):
        super().__init__(session, scope)
        self.client_id = client_id
        self.kind = "managed identity (user-assigned)" if client_id else "managed identity (system-assigned)"

    def describe(self) -> str:
        return self.kind + (f", client id {self.client_id}" if self.client_id else "")

    def _acquire(self) -> dict:
        if self._msal is None:
            import msal

            identity = (msal.UserAssignedManagedIdentity(client_id=self.client_id) if self.client_id
                        else msal.SystemAssignedManagedIdentity())
            self._msal = msal.ManagedIdentityClient(identity, http_client=self.session)
        try:
            return self._msal.acquire_token_for_client(resource=self.scope[: -len("/.default")])
        except OSError as err:  # requests' errors: no identity endpoint on this host
            raise GraphAuthError("managed_identity_unavailable", f"no managed identity endpoint answered ({err})",
                                 "run on an Azure host with a managed identity, or use another credential") from None
