"""X.509 for the emulator, in one place: the CA and server certificate its HTTPS serves, and the tenant's
client CA that issues certificates trusted by subject name (no upload needed)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from graph_mail_emulator.private import write_private

CA_FILE = "ca.pem"
CERT_FILE = "server.pem"
KEY_FILE = "server-key.pem"
SERVER_NAMES = ("localhost", "127.0.0.1", "::1")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class CertificateAuthority:
    """A CA with its own key; ``issue`` makes a key and a certificate it signs (for a server or a client)."""

    def __init__(self, name: str, *, rsa_keys: bool = False, days: int = 825, permitted=()):
        """``permitted``: the only names the CA may vouch for (X.509 name constraints), so that trusting
        it, even system-wide, trusts nothing else."""
        self.name = name
        self.rsa_keys = rsa_keys
        self.key = self._new_key()
        self.certificate = self._build(_name(name), self.key.public_key(), days=days, ca=True, permitted=permitted)

    def _new_key(self):
        """RSA where the key signs JWTs (Entra takes RS256/PS256 assertions); EC for TLS, which is faster."""
        return rsa.generate_private_key(public_exponent=65537, key_size=2048) if self.rsa_keys \
            else ec.generate_private_key(ec.SECP256R1())

    def _build(self, subject: x509.Name, public_key, *, days: int, ca: bool, server_names=(),
               permitted=()) -> x509.Certificate:
        now = dt.datetime.now(dt.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(_name(self.name))
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            if permitted:
                builder = builder.add_extension(x509.NameConstraints(
                    permitted_subtrees=[_subtree(n) for n in permitted], excluded_subtrees=None), critical=True)
        if server_names:
            builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                                            critical=False)
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue(self, common_name: str, *, server_names=(), days: int = 30):
        """(private key, certificate) signed by this CA; with ``server_names`` a TLS server certificate."""
        key = self._new_key()
        return key, self._build(_name(common_name), key.public_key(), days=days, ca=False, server_names=server_names)

    def issue_pem(self, common_name: str) -> bytes:
        """PEM with a new private key and its certificate, as an app's certificate_path would hold."""
        key, certificate = self.issue(common_name)
        return key_pem(key) + certificate_pem(certificate)

    def issued(self, certificate: x509.Certificate) -> bool:
        try:
            certificate.verify_directly_issued_by(self.certificate)
        except (InvalidSignature, TypeError, ValueError):  # another signer, or another key type: not ours
            return False
        return True


def _subtree(name: str) -> x509.GeneralName:
    """A name constraint: one DNS name, or one address as a /32 (/128) network."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return x509.DNSName(name)
    return x509.IPAddress(ipaddress.ip_network(f"{address}/{address.max_prefixlen}"))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def ensure_certificates(directory: Path, names=SERVER_NAMES) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server-key.pem) for HTTPS on ``names``; reused when present and covering them,
    so that a CA a browser or a connection trusts stays trusted. The CA may vouch for these names only."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE
    if ca_path.exists() and cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        fresh = cert.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        if fresh and set(names) <= _served_names(cert):
            return ca_path, cert_path, key_path
    authority = CertificateAuthority("airflow-graph-mail emulator CA", permitted=names)
    server_key, server_cert = authority.issue("localhost", server_names=names, days=365)
    ca_path.write_bytes(certificate_pem(authority.certificate))
    cert_path.write_bytes(certificate_pem(server_cert))
    write_private(key_path, key_pem(server_key))
    return ca_path, cert_path, key_path


def _served_names(certificate: x509.Certificate) -> set[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in names.get_values_for_type(x509.DNSName)} | \
        {str(n) for n in names.get_values_for_type(x509.IPAddress)}
