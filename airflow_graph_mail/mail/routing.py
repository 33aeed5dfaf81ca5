"""Who a message goes to, read the same way from each shape it can take: a Message, a Graph-shaped
dict, or MIME.

On the MIME path Graph takes the recipients from the headers that route mail: To, Cc, Bcc and the
Resent- ones. Each is read with this project's address parser (the one the JSON path uses) and with
the email package's RFC 5322 parser; when the two disagree, or the header has defects, it is refused
rather than guessed at, since Exchange might read it a third way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default

from airflow_graph_mail.errors import MessageValidationError
from airflow_graph_mail.mail.headers import ROUTING
from airflow_graph_mail.mail.recipients import (
    Recipient,
    check_recipient_count,
    one_of,
    parse_recipients,
)

_SINGLE = ("to", "cc", "bcc")  # RFC 5322: at most once each; the Resent- block may repeat
_EMPTY_GROUP = re.compile(r'^\s*(?:[^:;,<>"@]+|"[^"]*")\s*:\s*;\s*$')  # undisclosed-recipients:;
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_GRAPH_FIELDS = (("to", "toRecipients"), ("cc", "ccRecipients"), ("bcc", "bccRecipients"))


def _header_text(name: str, raw: str) -> str:
    """A raw header value (the parser keeps undecodable bytes as surrogate escapes) -> unfolded text;
    UTF-8 is allowed in headers (RFC 6532), other bytes are not."""
    try:
        raw = raw.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError:
        raise MessageValidationError(name, "the header holds bytes that are not UTF-8; encode display names "
                                     "as RFC 2047 encoded words") from None
    unfolded = _FOLD.sub("", raw).strip()
    if "\r" in unfolded or "\n" in unfolded or "\x00" in unfolded:
        raise MessageValidationError(name, "the header holds a bare line break or NUL")
    return unfolded


def _strict_addresses(name: str, value: str) -> list[Recipient]:
    """Both parsers must read the same addresses, or the header is refused."""
    if _EMPTY_GROUP.match(value):
        return []
    try:
        ours = parse_recipients(value, field=name)
    except MessageValidationError as err:
        raise MessageValidationError(name, f"{err.problem} (in a MIME header, give addresses as "
                                     "\"Name\" <address>, separated by commas; groups and comments are not "
                                     "accepted)") from None
    header = default.header_factory(name, value)
    if header.defects:
        raise MessageValidationError(name, f"cannot be read strictly ({header.defects[0]}); give addresses as "
                                     "\"Name\" <address>, separated by commas")
    theirs = [address.addr_spec for address in header.addresses]
    if [r.address.lower() for r in ours] != [a.lower() for a in theirs]:
        raise MessageValidationError(name, f"is ambiguous: read as {', '.join(r.address for r in ours)} here "
                                     f"but as {', '.join(theirs) or 'no address'} by an RFC 5322 parser; separate "
                                     "addresses with commas and quote display names")
    return ours


def mime_recipients(mime) -> list[tuple[str, Recipient]]:
    """(header, recipient) for every address in the headers that route a MIME message, checked strictly."""
    if isinstance(mime, EmailMessage):
        mime = mime.as_bytes()
    if isinstance(mime, str):
        mime = mime.encode("utf-8")
    if not isinstance(mime, (bytes, bytearray)):
        raise MessageValidationError("mime", f"expected MIME bytes, text or an email.message.EmailMessage, got "
                                     f"{type(mime).__name__}")
    headers = BytesHeaderParser(policy=default).parsebytes(bytes(mime))
    found: list[tuple[str, Recipient]] = []
    seen: set[str] = set()
    for name, raw in headers.raw_items():
        key = name.lower()
        if key not in ROUTING:
            continue
        if key in _SINGLE and key in seen:
            raise MessageValidationError(name, "appears twice in the MIME headers; give one header listing all "
                                         "its addresses")
        seen.add(key)
        found.extend((name, recipient) for recipient in _strict_addresses(name, _header_text(name, raw)))
    check_recipient_count(*([r] for h, r in found if h.lower() in _SINGLE))
    return found


def recipients_of(message) -> list[tuple[str, str]]:
    """(field, address) for to, cc and bcc (and Resent- headers in MIME) of any message form."""
    if isinstance(message, (bytes, bytearray, str, EmailMessage)):
        return [(field, recipient.address) for field, recipient in mime_recipients(message)]
    if isinstance(message, Mapping):
        return [(graph, r.address) for _, graph in _GRAPH_FIELDS
                for r in parse_recipients(one_of(graph, message, graph), field=graph)]
    return [(field, r.address) for field, _ in _GRAPH_FIELDS for r in getattr(message, field)]
