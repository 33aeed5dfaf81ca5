"""An app's certificate (PEM: private key and certificate) -> the client_credential MSAL signs assertions with."""

from __future__ import annotations

import hashlib
import re

from airflow_graph_mail.errors import GraphConfigError

_CERTIFICATE_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def load_certificate(pem: bytes, passphrase: str | None = None, thumbprint: str | None = None,
                     send_x5c: bool = False) -> dict:
    """Check the key and certificate can be read and belong together; compute the SHA-1 thumbprint Entra
    shows when none is given. ``send_x5c`` puts the certificate chain in each assertion, which
    subject-name/issuer sign-in needs (the certificate is then trusted by name, not uploaded)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    blocks = _CERTIFICATE_BLOCK.findall(pem)
    if not blocks:
        raise GraphConfigError("certificate: no PEM certificate found next to the private key "
                               "(certificate_path / certificate_private_key must hold both)")
    certificate = x509.load_pem_x509_certificate(blocks[0])
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase.encode() if passphrase else None)
    except (ValueError, TypeError) as err:
        raise GraphConfigError(
            "certificate: cannot read the private key (missing, or a wrong/missing certificate_passphrase)"
        ) from err
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise GraphConfigError("certificate: the private key does not belong to the first certificate in the PEM")
    der = certificate.public_bytes(serialization.Encoding.DER)
    computed = hashlib.sha1(der).hexdigest()
    if thumbprint:
        given = thumbprint.replace(":", "").replace(" ", "").lower()
        if given != computed:
            raise GraphConfigError(f"certificate_thumbprint: {thumbprint!r} is not the certificate's SHA-1 "
                                   f"thumbprint ({computed.upper()}); remove it to have it computed")
    credential = {"private_key": pem.decode("ascii"), "thumbprint": computed}
    if passphrase:
        credential["passphrase"] = passphrase
    if send_x5c:
        credential["public_certificate"] = b"\n".join(blocks).decode("ascii")
    return credential
