"""JSON Web Tokens as Entra issues them (RS256 access tokens) and as apps sign them (client assertions)."""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import time
import uuid

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class TokenInvalid(Exception):
    """Why a token was refused, in words close to Graph's own."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def split_jwt(token: str) -> tuple[dict, dict, bytes, bytes]:
    try:
        head, body, signature = token.split(".")
        return (json.loads(b64url_decode(head)), json.loads(b64url_decode(body)),
                f"{head}.{body}".encode("ascii"), b64url_decode(signature))
    except (ValueError, UnicodeDecodeError) as err:
        raise TokenInvalid("IDX14100: JWT is not well formed.") from err


def _verify_rsa(public_key, alg: str, signed: bytes, signature: bytes) -> None:
    pad = {"RS256": padding.PKCS1v15(),
           "PS256": padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)}
    if alg not in pad:
        raise TokenInvalid(f"unsupported signing algorithm {alg!r}")
    try:
        public_key.verify(signature, signed, pad[alg], hashes.SHA256())
    except InvalidSignature as err:
        raise TokenInvalid("signature validation failed") from err


class TokenIssuer:
    """Signs access tokens with a key made at start; only this emulator instance accepts them."""

    def __init__(self):
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        self.issued: collections.deque[str] = collections.deque(maxlen=1000)  # for "never logged" checks

    def issue(self, claims: dict, lifetime: int) -> str:
        now = int(time.time())
        payload = {"iat": now, "nbf": now, "exp": now + lifetime, "uti": uuid.uuid4().hex, **claims}
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing_input}.{b64url(signature)}"
        self.issued.append(token)
        return token

    def verify(self, token: str, audience: str) -> dict:
        header, claims, signed, signature = split_jwt(token)
        if header.get("kid") != self.kid:
            raise TokenInvalid("Access token validation failure. Invalid signing key.")
        _verify_rsa(self._key.public_key(), header.get("alg", ""), signed, signature)
        if claims.get("exp", 0) < time.time():
            raise TokenInvalid("Lifetime validation failed, the token is expired.")
        if claims.get("aud") != audience:
            raise TokenInvalid("Access token validation failure. Invalid audience.")
        return claims


def certificate_thumbprints(pem: bytes) -> tuple[x509.Certificate, str, str]:
    """(certificate, SHA-1 hex, SHA-256 hex) as Entra stores an uploaded certificate."""
    certificate = x509.load_pem_x509_certificate(pem)
    der = certificate.public_bytes(serialization.Encoding.DER)
    return certificate, hashlib.sha1(der).hexdigest(), hashlib.sha256(der).hexdigest()


def _registered_certificate(header: dict, app, client_ca) -> x509.Certificate | None:
    """The certificate that signed an assertion: uploaded to the app (found by its thumbprint), or sent in
    ``x5c`` and trusted by subject name and issuer (issued by the tenant's trusted CA to a trusted subject)."""
    # JWT says base64url; MSAL sends standard base64 with padding, which Entra accepts too.
    wanted = {str(v).rstrip("=").replace("+", "-").replace("/", "_")
              for v in (header.get("x5t"), header.get("x5t#S256")) if v}
    for pem in app.certificates:
        certificate, sha1, sha256 = certificate_thumbprints(pem)
        if {b64url(bytes.fromhex(sha1)), b64url(bytes.fromhex(sha256))} & wanted:
            return certificate
    chain = header.get("x5c") or []
    if chain and app.trusted_subjects:
        try:
            certificate = x509.load_der_x509_certificate(base64.b64decode(chain[0]))
        except ValueError:
            return None
        if certificate.subject.rfc4514_string() in app.trusted_subjects and client_ca.issued(certificate):
            return certificate
    return None


def verify_client_assertion(assertion: str, app, audience: str, client_ca) -> None:
    """An app's signed JWT: its certificate is registered (x5t) or trusted (x5c); iss=sub=client id;
    aud=token URL."""
    header, claims, signed, signature = split_jwt(assertion)
    certificate = _registered_certificate(header, app, client_ca)
    if certificate is None:
        thumbprint = header.get("x5t#S256") or header.get("x5t") or ""
        raise TokenInvalid(
            f"AADSTS700027: The certificate with identifier used to sign the client assertion is not "
            f"registered on application. [Reason - The key was not found., Thumbprint of key used by client: "
            f"'{thumbprint}']"
        )
    try:
        _verify_rsa(certificate.public_key(), header.get("alg", ""), signed, signature)
    except TokenInvalid as err:
        raise TokenInvalid(f"AADSTS700027: Client assertion failed signature validation. {err}") from err
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise TokenInvalid("AADSTS700023: Client assertion audience claim does not match Realm issuer.")
    if claims.get("aud") != audience:
        raise TokenInvalid(f"AADSTS700016: The client assertion audience must be {audience}.")
    if claims.get("exp", 0) < time.time():
        raise TokenInvalid("AADSTS700024: Client assertion is not within its valid time range.")


def verify_federated_assertion(assertion: str, app, issuer: TokenIssuer) -> None:
    """Workload identity federation: a token from an external issuer (here, the emulator's own), matched
    against the app's federated identity credentials by issuer, subject and audience."""
    _, claims, _, _ = split_jwt(assertion)
    iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
    records = [r for r in app.federated if r["issuer"] == iss and r["subject"] == sub]
    if not records:
        raise TokenInvalid(f"AADSTS70021: No matching federated identity record found for presented assertion. "
                           f"Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'.")
    if not any(aud in r["audiences"] for r in records):
        raise TokenInvalid(f"AADSTS700212: No matching federated identity record found for presented assertion "
                           f"audience '{aud}'.")
    try:
        issuer.verify(assertion, aud)
    except TokenInvalid as err:
        code = "AADSTS700024" if "expired" in str(err) else "AADSTS700213"
        raise TokenInvalid(f"{code}: The federated assertion was refused: {err}") from err
