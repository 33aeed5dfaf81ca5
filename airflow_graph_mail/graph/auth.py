"""App credentials -> bearer tokens through MSAL, over our own requests session (CA bundle, proxies)."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

from airflow_graph_mail.graph.errors import GraphAuthError, GraphConfigError

# AADSTS codes a user can act on, with the field to fix.
_AADSTS_HINTS = {
    "7000215": "the client secret is wrong: fix the connection's password",
    "7000222": "the client secret has expired: create a new one in Entra and update the connection's password",
    "700016": "no app with this client id in the tenant: check the connection's login (client id) and tenant_id",
    "90002": "tenant not found: check tenant_id",
    "700027": "the certificate assertion was refused: upload the certificate to the app registration",
    "500011": "the resource was not found in the tenant: check graph_url / cloud",
}


def _hint(description: str) -> str:
    for code, hint in _AADSTS_HINTS.items():
        if f"AADSTS{code}" in (description or ""):
            return hint
    return ""


def load_certificate(pem: bytes, passphrase: str | None = None) -> dict:
    """A PEM holding the private key and the certificate -> MSAL's client_credential with thumbprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise GraphConfigError("certificate: no PEM certificate found next to the private key") from err
    try:
        serialization.load_pem_private_key(pem, password=passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as err:
        raise GraphConfigError(
            "certificate: cannot read the private key (missing, or a wrong/missing certificate_passphrase)"
        ) from err
    der = certificate.public_bytes(serialization.Encoding.DER)
    credential = {"private_key": pem.decode("ascii"), "thumbprint": hashlib.sha1(der).hexdigest()}
    if passphrase:
        credential["passphrase"] = passphrase
    return credential


@dataclass(repr=False)
class ClientCredential:
    """Client-credentials flow for one app; MSAL keeps the token in memory and renews it near expiry."""

    tenant_id: str
    client_id: str
    authority_url: str
    scope: str
    session: object
    client_secret: str | None = None
    certificate: dict | None = None
    _app: object = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __repr__(self) -> str:
        kind = "certificate" if self.certificate else "secret"
        return f"ClientCredential(tenant_id={self.tenant_id!r}, client_id={self.client_id!r}, {kind})"

    def _application(self):
        if self._app is None:
            import msal

            self._app = msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self.certificate or self.client_secret,
                authority=f"{self.authority_url.rstrip('/')}/{self.tenant_id}",
                http_client=self.session,
                instance_discovery=False,
            )
        return self._app

    def get_token(self) -> str:
        with self._lock:
            try:
                result = self._application().acquire_token_for_client(scopes=[self.scope])
            except ValueError as err:  # MSAL raises on a discovery document it cannot use
                raise GraphAuthError("authority_error", str(err), "check authority_url and tenant_id") from None
        if "access_token" not in result:
            description = result.get("error_description", "")
            raise GraphAuthError(result.get("error", "unknown_error"), description, _hint(description))
        return result["access_token"]

    def invalidate(self) -> None:
        """Forget cached tokens (after a 401), so the next call asks Entra again."""
        with self._lock:
            if self._app is not None:
                cache = self._app.token_cache
                for token in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(token)
