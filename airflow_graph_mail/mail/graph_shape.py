"""Messages given in Graph's own JSON shape (pasted from Microsoft's docs), checked like a Message.

Graph reads property names in any case (``toRecipients``, ``ToRecipients``), at every level. The
properties this provider reads or adds to are returned in Graph's spelling, so that nothing is looked
up twice or lost; a property given twice in two spellings is refused, since one would be dropped.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from airflow_graph_mail.errors import MessageValidationError
from airflow_graph_mail.mail.headers import CONTROL, check_custom_header, check_header, no_line_breaks
from airflow_graph_mail.mail.recipients import (
    RECIPIENT_FIELDS,
    Recipient,
    check_duplicates,
    check_recipient_count,
    one_of,
    parse_recipients,
)

RECIPIENT_LISTS = tuple(RECIPIENT_FIELDS.values())
_SINGLE_RECIPIENTS = ("from", "sender")
_KNOWN = (*RECIPIENT_LISTS, *_SINGLE_RECIPIENTS, "subject", "body", "importance", "attachments",
          "internetMessageHeaders", "singleValueExtendedProperties")
_BASE64_SPACE = re.compile(rb"\s+")


def _check_keys(where: str, value) -> None:
    """No property twice in two spellings, in this dict or any dict or list inside it."""
    if isinstance(value, Mapping):
        seen: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise MessageValidationError(where, f"property name {key!r} is not text")
            if key.lower() in seen:
                raise MessageValidationError(where, f"{seen[key.lower()]!r} and {key!r} are the same property "
                                             "(Graph reads names in any case); keep one")
            seen[key.lower()] = key
            _check_keys(f"{where}.{key}", item)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _check_keys(f"{where}[{position}]", item)


def _rename(value: Mapping, names) -> dict:
    """A copy of ``value`` with each of ``names`` spelled as Graph spells it (other keys kept as given)."""
    canonical = {name.lower(): name for name in names}
    return {canonical.get(key.lower(), key): item for key, item in value.items()}


def _list(field: str, value) -> list:
    if not isinstance(value, list):
        raise MessageValidationError(field, f"must be a list, got {type(value).__name__}")
    return value


def _dict(field: str, value) -> Mapping:
    if not isinstance(value, Mapping):
        raise MessageValidationError(field, f"must be a dict, got {type(value).__name__}")
    return value


def _recipient_shape(entry) -> dict:
    if not isinstance(entry, Mapping):
        return entry  # parse_recipients names the field and the type
    document = _rename(entry, ("emailAddress",))
    email = document.get("emailAddress")
    if isinstance(email, Mapping):
        document["emailAddress"] = _rename(email, ("address", "name"))
    return document


def _body(value) -> dict:
    body = _rename(_dict("body", value), ("contentType", "content"))
    kind = body.get("contentType", "text")
    if not isinstance(kind, str) or kind.lower() not in ("text", "html"):
        raise MessageValidationError("body.contentType", f"{kind!r} is not one of text, html")
    if not isinstance(body.get("content", ""), str):
        raise MessageValidationError("body.content", f"must be text, got {type(body['content']).__name__}")
    return body


def _headers(value) -> list[dict]:
    headers = []
    for position, entry in enumerate(_list("internetMessageHeaders", value)):
        entry = _rename(_dict(f"internetMessageHeaders[{position}]", entry), ("name", "value"))
        name, text = check_header("internetMessageHeaders", entry.get("name"), entry.get("value"))
        check_custom_header("internetMessageHeaders", name)
        headers.append({**entry, "name": name, "value": text})
    return headers


def _attachment(position: int, value) -> dict:
    field = f"attachments[{position}]"
    attachment = _rename(_dict(field, value), ("@odata.type", "name", "contentType", "contentBytes",
                                               "isInline", "contentId"))
    name = attachment.get("name")
    if name is not None and (not isinstance(name, str) or CONTROL.search(name)):
        raise MessageValidationError(f"{field}.name", f"{name!r}: a file name is text without control characters")
    content = attachment.get("contentBytes")
    if content is not None:
        attachment["contentBytes"] = clean_base64(f"{field}.contentBytes", content).decode("ascii")
    return attachment


def clean_base64(field: str, content) -> bytes:
    """Base64 as any encoder writes it (``base64.encodebytes`` breaks lines every 76 characters) -> one
    unbroken, checked string, as Graph expects."""
    if isinstance(content, str):
        try:
            content = content.encode("ascii")
        except UnicodeEncodeError:
            raise MessageValidationError(field, "is not valid base64 (it holds non-ASCII characters)") from None
    if not isinstance(content, (bytes, bytearray)):
        raise MessageValidationError(field, f"must be base64 text, got {type(content).__name__}")
    compact = _BASE64_SPACE.sub(b"", bytes(content))
    try:
        base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise MessageValidationError(field, "is not valid base64") from None
    return compact


def graph_document(message: Mapping, *, require_recipients: bool) -> tuple[dict, dict[str, list[Recipient]]]:
    """A Graph-shaped message dict -> a checked copy with Graph's spelling of the properties we read, and its
    recipients as parsed while checking (to, cc, bcc, reply_to), for the caller to read instead of parsing
    again."""
    if not isinstance(message, Mapping):
        raise MessageValidationError("message", f"expected a Message or a Graph message dict, not "
                                     f"{type(message).__name__}")
    _check_keys("message", message)
    if {key.lower() for key in message} <= {"message", "savetosentitems"} and one_of("message", message, "message"):
        raise MessageValidationError("message", "this is a sendMail request body; give the message inside it, "
                                     "and save_to_sent_items as its own argument")
    document = _rename(message, _KNOWN)
    recipients: dict[str, list[Recipient]] = {}
    for field, name in RECIPIENT_FIELDS.items():
        entries = _list(name, document[name]) if name in document else []
        recipients[field] = parse_recipients(entries, field=name)
        if name in document:
            document[name] = [_recipient_shape(entry) for entry in entries]
    counted = {RECIPIENT_FIELDS[field]: recipients[field] for field in ("to", "cc", "bcc")}
    check_recipient_count(*counted.values())
    check_duplicates(counted)
    if require_recipients and not sum(map(len, counted.values())):
        raise MessageValidationError("toRecipients", "no recipients: give at least one address")
    for name in _SINGLE_RECIPIENTS:
        if name in document:
            parse_recipients(_dict(name, document[name]), field=name)
            document[name] = _recipient_shape(document[name])
    if "subject" in document and document["subject"] is not None:
        if not isinstance(document["subject"], str):
            raise MessageValidationError("subject", f"expected text, got {type(document['subject']).__name__}")
        no_line_breaks("subject", document["subject"])
    if "body" in document:
        document["body"] = _body(document["body"])
    if "internetMessageHeaders" in document:
        document["internetMessageHeaders"] = _headers(document["internetMessageHeaders"])
    if "attachments" in document:
        document["attachments"] = [_attachment(i, a) for i, a in enumerate(_list("attachments",
                                                                                 document["attachments"]))]
    if "singleValueExtendedProperties" in document:
        document["singleValueExtendedProperties"] = [
            _rename(_dict("singleValueExtendedProperties", p), ("id", "value"))
            for p in _list("singleValueExtendedProperties", document["singleValueExtendedProperties"])]
    return document, recipients
