"""Helpers the test modules share (test modules never import one another)."""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import trustme
from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

ROOT = Path(__file__).resolve().parent.parent
TEST_DAGS = ROOT / "tests" / "dags"


def load_module(name: str, path: Path) -> ModuleType:
    """The Python file at ``path`` run as a module called ``name`` (not added to ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def as_context(values: Mapping[str, Any]) -> Context:
    """A hand-built task context, typed as the ``Context`` operators and notifiers take; the same dict, passed on
    as it is (a test gives only the keys the code reads, and stand-ins for the task instance and the DAG run)."""
    return cast("Context", values)


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
    return sum(1 for r in emulator.inspect.request_log if r["path"].endswith("/oauth2/v2.0/token"))


def secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    """The names of the secrets that appear in ``text``."""
    return [name for name, value in secrets.items() if value and value in text]


def dsn(ref: str, failed: list[tuple[str, str]], *, status_type: str = "message/delivery-status",
        original_type: str = "text/rfc822-headers", report_type: str = "delivery-status",
        status_encoding: str = "", original_encoding: str = "", extra_parts: bytes = b"") -> bytes:
    """A non-delivery report as another MTA writes one (RFC 6522/3464): a part for people, one
    ``Final-Recipient`` block per failed (address, status), and the original's headers carrying ``ref``.
    ``*_encoding`` "base64" or "quoted-printable" encodes that part."""
    import base64
    import quopri

    def encoded(body: bytes, encoding: str) -> tuple[bytes, bytes]:
        if encoding == "base64":
            return b"Content-Transfer-Encoding: base64\r\n", base64.encodebytes(body).replace(b"\n", b"\r\n")
        if encoding == "quoted-printable":
            return b"Content-Transfer-Encoding: quoted-printable\r\n", quopri.encodestring(body)
        return b"", body

    blocks = b"Reporting-MTA: dns;mx.remote.example\r\n\r\n" + b"".join(
        b"Final-Recipient: " + (a.encode() if ";" in a else b"rfc822;" + a.encode()) +
        b"\r\nAction: failed\r\nStatus: " + s.encode() + b"\r\nDiagnostic-Code: smtp; 550 " + s.encode() +
        b" rejected\r\n\r\n" for a, s in failed)
    original = (b"Message-ID: <original@contoso.com>\r\nSubject: Your statement\r\n"
                b"X-Airflow-Graph-Mail-Ref: " + ref.encode() + b"\r\n")
    if original_type.startswith("message/"):
        original += b"\r\nDear customer,\r\n"
    status_header, status_body = encoded(blocks, status_encoding)
    original_header, original_body = encoded(original, original_encoding)
    return (b"From: Mail Delivery System <MAILER-DAEMON@mx.remote.example>\r\nTo: airflow@contoso.com\r\n"
            b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/report; report-type=" + report_type.encode() + b"; boundary=\"rep\"\r\n\r\n"
            b"--rep\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nI'm sorry to have to inform you...\r\n"
            b"--rep\r\nContent-Type: " + status_type.encode() + b"\r\n" + status_header + b"\r\n" + status_body +
            b"\r\n--rep\r\nContent-Type: " + original_type.encode() + b"\r\n" + original_header + b"\r\n" +
            original_body + b"\r\n" + extra_parts + b"--rep--\r\n")


def place_report(emulator, mime: bytes) -> str:
    """Put ``mime`` in the default sender's Inbox as it arrived from outside (Exchange's transport keeps the
    MIME as sent and files a report with class REPORT.IPM.Note.NDR); returns its internetMessageId."""
    import uuid

    message_id = f"<{uuid.uuid4().hex}@outside.example>"
    emulator.backend.store.create_draft(emulator.backend.store.user(emulator.default_sender), "inbox", {
        "subject": "Undeliverable", "internetMessageId": message_id, "isRead": False,
        "singleValueExtendedProperties": [{"id": "String 0x001A", "value": "REPORT.IPM.Note.NDR"}]}, [], mime)
    return message_id


def ref_of(emulator, address: str) -> str:
    """The bounce ref on the copy ``address`` received: what any recipient can read."""
    (mail,) = emulator.inspect.messages(address)
    return next(h["value"] for h in mail["internetMessageHeaders"] if h["name"] == "x-airflow-graph-mail-ref")


@contextmanager
def at_the_recursion_limit(deep: bool = True) -> Iterator[None]:
    """Around code that recurses to Python's limit on purpose (a template that calls itself): a garbage
    collection at that depth runs finalizers (an earlier test's unclosed socket) that get no frame, and
    each "exception ignored" fails the test; pytest could not even format them (CI, ad8d9b5). So: collected
    before, none during. ``deep=False`` does nothing (for a table's other rows)."""
    if not deep:
        yield
        return
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
