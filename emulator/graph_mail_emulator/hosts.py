"""Microsoft's host names pointed at the emulator, inside one process: what an /etc/hosts line does for a
machine, so that a client (msal, azure-identity, msgraph-sdk, O365) runs with its defaults untouched.

Only port 443 of the named hosts is redirected; every other name resolves as before. The emulator must
serve these names (``Network(public_hosts=True)``): its certificate covers them and its CA is
constrained to them, so trusting the CA trusts nothing else.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from graph_mail_emulator.site import MICROSOFT_HOSTS

_HTTPS_PORTS = (443, "443", "https", None)
# Names resolve to an address of the documentation range (RFC 5737), which no network routes; a connection
# to it on 443 is made to the emulator instead. Clients that keep only the address a name resolved to
# (anyio, under httpx) still land on the emulator's port.
_STAND_IN = "192.0.2.{}"
_lock = threading.Lock()
_names: dict[str, str] = {}
_targets: dict[tuple[str, int], tuple[str, int]] = {}
_original_getaddrinfo = socket.getaddrinfo
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _getaddrinfo(host, port, *args, **kwargs):
    name = host.decode("idna") if isinstance(host, bytes) else host
    stand_in = _names.get(name.lower().rstrip(".")) if isinstance(name, str) else None
    if stand_in is not None and port in _HTTPS_PORTS:
        return _original_getaddrinfo(stand_in, 443, *args, **kwargs)
    return _original_getaddrinfo(host, port, *args, **kwargs)


def _target(address):
    return _targets.get(address[:2], address) if isinstance(address, tuple) else address


def _connect(sock, address):
    return _original_connect(sock, _target(address))


def _connect_ex(sock, address):
    return _original_connect_ex(sock, _target(address))


def _install(on: bool) -> None:
    socket.getaddrinfo = _getaddrinfo if on else _original_getaddrinfo
    socket.socket.connect = _connect if on else _original_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex if on else _original_connect_ex  # type: ignore[method-assign]


@contextlib.contextmanager
def redirect_hosts(host: str, port: int, names=MICROSOFT_HOSTS) -> Iterator[None]:
    """While inside, connections to ``names`` on port 443 go to ``host:port`` (this process only)."""
    with _lock:
        before_names, before_targets = dict(_names), dict(_targets)
        stand_in = _STAND_IN.format(len(_targets) + 1)
        _targets[(stand_in, 443)] = (host, port)
        _names.update({name.lower(): stand_in for name in names})
        _install(True)
    try:
        yield
    finally:
        with _lock:
            _names.clear()
            _names.update(before_names)
            _targets.clear()
            _targets.update(before_targets)
            _install(bool(_targets))


# Where the process found its trust before: requests' variables, then the ssl module's (OpenSSL's) file.
_TRUST_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def _trusted_before() -> list[Path]:
    """The CA files (or directories of them) this process trusted before: those the variables name (a
    corporate CA), the ssl module's default file, and certifi's roots (requests' and httpx's default)."""
    places = [os.environ.get(name) for name in _TRUST_VARIABLES]
    places.append(ssl.get_default_verify_paths().openssl_cafile)
    with contextlib.suppress(ImportError):
        import certifi

        places.append(certifi.where())
    return [Path(place) for place in places if place]


def _certificates(path: Path) -> list[bytes]:
    """The PEM certificates in a file, or in the files of a directory; none from what cannot be read."""
    with contextlib.suppress(OSError):
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        found = []
        for file in files:
            with contextlib.suppress(OSError):
                found += _PEM_CERTIFICATE.findall(file.read_bytes())
        return found
    return []


def trust_bundle(ca_path: Path) -> Path:
    """A CA file trusting the emulator and everything the process trusted before (``_trusted_before``),
    written beside the emulator's CA: for REQUESTS_CA_BUNDLE and SSL_CERT_FILE, so that other HTTPS keeps
    working (a corporate proxy's CA included)."""
    bundle = ca_path.with_name("trust-bundle.pem")
    certificates: dict[bytes, None] = {}  # in order, each once
    for path in (ca_path, *_trusted_before()):
        certificates.update(dict.fromkeys(_certificates(path)))
    bundle.write_bytes(b"\n".join(certificates) + b"\n")
    return bundle


@contextlib.contextmanager
def microsoft_hosts(emulator) -> Iterator[None]:
    """login.microsoftonline.com, graph.microsoft.com and outlook.office.com answered by ``emulator``, its CA
    trusted by requests (REQUESTS_CA_BUNDLE), httpx and the ssl module's defaults (SSL_CERT_FILE), in this
    process, besides everything those trusted before (``trust_bundle``)."""
    if not emulator.config.network.public_hosts:
        raise ValueError("start the emulator with Network(public_hosts=True) (--microsoft-hosts) to serve "
                         "Microsoft's host names")
    bundle = str(trust_bundle(Path(emulator.ca_path)))
    saved = {name: os.environ.get(name) for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    os.environ.update(dict.fromkeys(saved, bundle))
    try:
        with redirect_hosts(emulator.site.host, emulator.site.port):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
