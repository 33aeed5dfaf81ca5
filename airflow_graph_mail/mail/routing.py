"""Who a MIME message goes to, and who a reply reaches; and the same of a message as Graph returns it.

On the MIME path Graph takes the recipients from the headers that route mail: To, Cc, Bcc and the
Resent- ones. Each is read with this project's address parser (the one the JSON path uses) and with
the email package's RFC 5322 parser; when the two disagree, or the header has defects, it is refused
rather than guessed at, since Exchange might read it a third way. The headers a reply or a read
receipt goes to (Reply-To and its kin) are read the same way for the allow-list.
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
    RECIPIENT_FIELDS,
    Recipient,
    check_recipient_count,
    one_of,
    parse_recipients,
)

_COUNTED = ("to", "cc", "bcc")  # Graph's 500 recipients per message
_SINGLE = (*_COUNTED, "reply-to")  # RFC 5322: at most once each; the Resent- block may repeat
# Where replies (Reply-To; Mail-Reply-To and Mail-Followup-To, which some clients honour) and read receipts
# (Disposition-Notification-To, RFC 8098; the older Return-Receipt-To) go: addresses the allow-list covers.
REPLY_HEADERS = ("reply-to", "mail-reply-to", "mail-followup-to", "disposition-notification-to",
                 "return-receipt-to")
_EMPTY_GROUP = re.compile(r'^\s*(?:[^:;,<>"@]+|"[^"]*")\s*:\s*;\s*$')  # undisclosed-recipients:;
_FOLD = re.compile(r"\r?\n(?=[ \t])")


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
    header = default.header_factory("To", value)  # each header read here is an address list, parsed as To is
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
    found = _mime_addresses(mime, ROUTING)
    check_recipient_count(*([r] for h, r in found if h.lower() in _COUNTED))
    return found


def mime_bytes(mime) -> bytes:
    """MIME as users give it (bytes, text or an ``email.message.EmailMessage``) -> its RFC 5322 bytes."""
    if isinstance(mime, EmailMessage):
        return mime.as_bytes()
    if isinstance(mime, str):
        return mime.encode("utf-8")
    if isinstance(mime, (bytes, bytearray)):
        return bytes(mime)
    raise MessageValidationError("mime", f"expected MIME bytes, text or an email.message.EmailMessage, got "
                                 f"{type(mime).__name__}")


def _mime_addresses(mime, names: tuple[str, ...]) -> list[tuple[str, Recipient]]:
    """(header, address) for every address in the MIME headers ``names`` (lower case), checked strictly."""
    headers = BytesHeaderParser(policy=default).parsebytes(mime_bytes(mime))
    found: list[tuple[str, Recipient]] = []
    seen: set[str] = set()
    for name, raw in headers.raw_items():
        key = name.lower()
        if key not in names:
            continue
        if key in _SINGLE and key in seen:
            raise MessageValidationError(name, "appears twice in the MIME headers; give one header listing all "
                                         "its addresses")
        seen.add(key)
        found.extend((name, recipient) for recipient in _strict_addresses(name, _header_text(name, raw)))
    return found


def reply_recipients(mime) -> list[tuple[str, Recipient]]:
    """(header, recipient) for every address a reply to the MIME message, or a read receipt, would reach."""
    return _mime_addresses(mime, REPLY_HEADERS)


def graph_recipients(message: Mapping) -> list[tuple[str, str]]:
    """(property, address) for the recipients and Reply-To of a message as Graph returns it (a draft a
    person may have edited), its properties in any case."""
    return [(graph, r.address) for graph in RECIPIENT_FIELDS.values()
            for r in parse_recipients(one_of(graph, message, graph), field=graph)]
