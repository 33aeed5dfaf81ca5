"""Helpers the test modules share (test modules never import one another)."""

from __future__ import annotations

from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parent.parent
TEST_DAGS = ROOT / "tests" / "dags"


def make_certificate(passphrase: bytes | None = None) -> tuple[bytes, bytes]:
    """An app's certificate as Entra takes it: (PEM with the private key and certificate, the certificate
    PEM alone, to upload). The key is encrypted with ``passphrase`` when given."""
    leaf = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("graph-mail-test.example",
                                                                key_type=trustme.KeyType.RSA)
    key_pem = leaf.private_key_pem.bytes()
    if passphrase:
        key = serialization.load_pem_private_key(key_pem, password=None)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.BestAvailableEncryption(passphrase))
    cert_pem = leaf.cert_chain_pems[0].bytes()
    return key_pem + cert_pem, cert_pem


def token_requests(emulator) -> int:
    return sum(1 for r in emulator.request_log if r["path"].endswith("/oauth2/v2.0/token"))


def secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    """The names of the secrets that appear in ``text``."""
    return [name for name, value in secrets.items() if value and value in text]
