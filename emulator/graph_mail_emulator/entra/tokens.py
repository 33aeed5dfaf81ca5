"""JSON Web Tokens as Entra issues them (RS256 access tokens) and as apps sign them (client assertions),
signed and checked with PyJWT: signature, expiry, not-before, audience and issuer."""

from __future__ import annotations

import base64
import collections
import hashlib
import time
import uuid
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_ALGORITHMS = ["RS256", "PS256"]
_LEEWAY = 5  # seconds of clock skew allowed to a client's own clock (assertions); our tokens use ours


class TokenInvalid(Exception):
    """Why a token was refused, in words close to Graph's own."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unverified(token: str) -> tuple[dict, dict]:
    """(header, claims) of a token, read without checking it (to find the key that should)."""
    try:
        return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as err:
        raise TokenInvalid("IDX14100: JWT is not well formed.") from err


class TokenIssuer:
    """Signs tokens with a key made at start; only this emulator instance accepts them."""

    def __init__(self, issuer: str | None = None):
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex
        self.issuer = issuer  # checked on verify when set
        self.issued: collections.deque[str] = collections.deque(maxlen=1000)  # for "never logged" checks

    def issue(self, claims: dict, lifetime: int) -> str:
        now = int(time.time())
        payload = {"iat": now, "nbf": now, "exp": now + lifetime, "uti": uuid.uuid4().hex, **claims}
        token = jwt.encode(payload, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})
        self.issued.append(token)
        return token

    def verify(self, token: str, audiences, issuer: str | None = None) -> dict:
        """The claims of a token this issuer signed, for one of ``audiences``, still valid."""
        header, _ = unverified(token)
        if header.get("kid") != self.kid:
            raise TokenInvalid("Access token validation failure. Invalid signing key.")
        audiences = [audiences] if isinstance(audiences, str) else list(audiences)
        try:
            return jwt.decode(token, self._key.public_key(), algorithms=["RS256"], audience=audiences,
                              issuer=issuer, options={"require": ["exp", "nbf", "aud", "iss"]})
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("Lifetime validation failed, the token is expired.") from None
        except jwt.ImmatureSignatureError:
            raise TokenInvalid("Lifetime validation failed, the token is not yet valid.") from None
        except jwt.InvalidAudienceError:
            raise TokenInvalid("Access token validation failure. Invalid audience.") from None
        except jwt.InvalidIssuerError:
            raise TokenInvalid("Access token validation failure. Invalid issuer.") from None
        except jwt.PyJWTError as err:
            raise TokenInvalid(f"Access token validation failure. {err}") from None


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
    """An app's signed JWT: its certificate is registered (x5t) or trusted (x5c); iss = sub = client id;
    aud = the token URL; within its lifetime."""
    header, _ = unverified(assertion)
    certificate = _registered_certificate(header, app, client_ca)
    if certificate is None:
        thumbprint = header.get("x5t#S256") or header.get("x5t") or ""
        raise TokenInvalid(
            f"AADSTS700027: The certificate with identifier used to sign the client assertion is not "
            f"registered on application. [Reason - The key was not found., Thumbprint of key used by client: "
            f"'{thumbprint}']"
        )
    try:
        public_key: Any = certificate.public_key()  # an RSA key: PS256/RS256 assertions
        claims = jwt.decode(assertion, public_key, algorithms=_ALGORITHMS, audience=audience,
                            leeway=_LEEWAY, options={"require": ["exp", "aud", "iss", "sub"]})
    except jwt.ExpiredSignatureError:
        raise TokenInvalid("AADSTS700024: Client assertion is not within its valid time range.") from None
    except jwt.InvalidAudienceError:
        raise TokenInvalid(f"AADSTS700016: The client assertion audience must be {audience}.") from None
    except jwt.InvalidSignatureError as err:
        raise TokenInvalid(f"AADSTS700027: Client assertion failed signature validation. {err}") from None
    except jwt.PyJWTError as err:
        raise TokenInvalid(f"AADSTS700027: Client assertion is not valid. {err}") from None
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise TokenInvalid("AADSTS700023: Client assertion audience claim does not match Realm issuer.")


def verify_federated_assertion(assertion: str, app, issuer: TokenIssuer) -> None:
    """Workload identity federation: a token from an external issuer (here, the emulator's own), matched
    against the app's federated identity credentials by issuer, subject and audience."""
    _, claims = unverified(assertion)
    iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
    records = [r for r in app.federated if r["issuer"] == iss and r["subject"] == sub]
    if not records:
        raise TokenInvalid(f"AADSTS70021: No matching federated identity record found for presented assertion. "
                           f"Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{aud}'.")
    if not any(aud in r["audiences"] for r in records):
        raise TokenInvalid(f"AADSTS700212: No matching federated identity record found for presented assertion "
                           f"audience '{aud}'.")
    try:
        issuer.verify(assertion, aud, issuer=iss)
    except TokenInvalid as err:
        code = "AADSTS700024" if "expired" in str(err) else "AADSTS700213"
        raise TokenInvalid(f"{code}: The federated assertion was refused: {err}") from err
