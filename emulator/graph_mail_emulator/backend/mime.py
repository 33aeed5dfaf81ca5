"""MIME in (a base64 request body, as Graph takes it) and out (.eml files of stored messages).

What a client stored (a subject or a name with a line break in it) is kept as given and written into MIME
safely: every header value on one line, every display name quoted and escaped, so no value can end its
header and forge another, nor add a recipient.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, quote
from typing import TYPE_CHECKING

from graph_mail_emulator.backend.rules import FIELD_NAME
from graph_mail_emulator.backend.text import one_line
from graph_mail_emulator.errors import bad_request

if TYPE_CHECKING:
    from graph_mail_emulator.backend.store import MailStore

INVALID_MIME = ("ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
_IMPORTANCE = {"1": "high", "2": "high", "3": "normal", "4": "low", "5": "low"}
_MEDIA_TYPE = re.compile(r"^([A-Za-z0-9!#$&^_.+-]+)/([A-Za-z0-9!#$&^_.+-]+)$")
# Header fields build_eml writes from the message's properties: a received mail's internetMessageHeaders
# hold them too, and one message has each at most once.
_OWN_FIELDS = {"from", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id", "importance", "mime-version",
               "content-type", "content-transfer-encoding", "in-reply-to", "references"}


def media_type(content_type: str) -> tuple[str, str]:
    """(type, subtype) of a stored content type, or application/octet-stream when it is not one."""
    found = _MEDIA_TYPE.match(str(content_type).split(";", 1)[0].strip())
    return (found.group(1).lower(), found.group(2).lower()) if found else ("application", "octet-stream")


def text_of(part: Message) -> str:
    """A text part's content; bytes in a charset Python does not know are read as UTF-8, never refused."""
    try:
        return part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError):
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def _recipients(header) -> list[dict]:
    out = []
    for name, address in getaddresses([str(header)] if header else []):
        if address:
            out.append({"emailAddress": {"address": address, **({"name": name} if name else {})}})
    return out


def decode_body(body: bytes) -> bytes:
    """The request body is base64 of the RFC 5322 bytes; line breaks inside it are allowed."""
    try:
        raw = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(*INVALID_MIME) from None
    if not raw or b":" not in raw.split(b"\n", 1)[0]:
        raise bad_request(*INVALID_MIME)
    return raw


def message_from_mime(raw: bytes) -> tuple[dict, list[dict]]:
    """(message, attachments) from RFC 5322 bytes. Headers the email package cannot read (it fails on some
    malformed address lists) make the MIME malformed, answered as Graph documents it: 400, never a 500."""
    try:
        return _read_mime(raw)
    except (IndexError, AttributeError, TypeError, ValueError):
        raise bad_request(*INVALID_MIME) from None


def _read_mime(raw: bytes) -> tuple[dict, list[dict]]:
    mime = BytesParser(policy=policy.default).parsebytes(raw)
    message: dict = {"subject": str(mime.get("Subject", ""))}
    for header, name in (("To", "toRecipients"), ("Cc", "ccRecipients"), ("Bcc", "bccRecipients"),
                         ("Reply-To", "replyTo")):
        message[name] = _recipients(mime.get(header))
    sender = _recipients(mime.get("From"))
    if sender:
        message["from"] = sender[0]
    importance = str(mime.get("Importance", "")).lower()
    message["importance"] = importance if importance in ("low", "normal", "high") else \
        _IMPORTANCE.get(str(mime.get("X-Priority", "3")).strip()[:1], "normal")
    if mime.get("Message-ID"):
        message["internetMessageId"] = str(mime["Message-ID"])
    custom = [{"name": k, "value": str(v)} for k, v in mime.items() if k.lower().startswith("x-")]
    if custom:
        message["internetMessageHeaders"] = custom
    body = mime.get_body(preferencelist=("html", "plain"))
    if body is not None:
        message["body"] = {"contentType": "html" if body.get_content_subtype() == "html" else "text",
                           "content": text_of(body)}
    else:
        message["body"] = {"contentType": "text", "content": ""}
    attachments = []
    for part in mime.walk():
        if part.is_multipart() or part is body or not part.get_filename():
            continue
        cid = (part.get("Content-ID") or "").strip("<> ") or None
        attachments.append({
            "name": part.get_filename(),
            "contentType": part.get_content_type(),
            "isInline": part.get_content_disposition() == "inline",
            "contentId": cid,
            "content": part.get_payload(decode=True) or b"",
        })
    return message, attachments


def _address_list(recipients: list[dict]) -> str:
    """Addresses as a header holds them: names quoted, their quotes and backslashes escaped (a quote or a
    comma in a name never makes another address), everything on one line."""
    parts = []
    for r in recipients:
        name, address = (one_line(str(r["emailAddress"].get(key) or "")) for key in ("name", "address"))
        parts.append(f'"{quote(name)}" <{address}>' if name else address)
    return ", ".join(parts)


def build_eml(message: dict, attachments: list[dict]) -> bytes:
    """A stored message as an .eml a mail client opens: headers, body and every attachment."""
    mime = EmailMessage(policy=policy.SMTP)
    sender = message.get("from") or message.get("sender")
    if sender:
        mime["From"] = _address_list([sender])
    for name, header in (("toRecipients", "To"), ("ccRecipients", "Cc"), ("bccRecipients", "Bcc"),
                         ("replyTo", "Reply-To")):
        if message.get(name):
            mime[header] = _address_list(message[name])
    mime["Subject"] = one_line(message.get("subject", ""))
    when = message.get("sentDateTime") or message.get("createdDateTime")
    if when:
        mime["Date"] = format_datetime(dt.datetime.fromisoformat(when.replace("Z", "+00:00")))
    if message.get("internetMessageId"):
        mime["Message-ID"] = one_line(message["internetMessageId"])
    if message.get("importance", "normal") != "normal":
        mime["Importance"] = message["importance"]
    if message.get("_inReplyTo"):  # a reply or forward: the mail it answers, for the receiver's threading
        mime["In-Reply-To"] = one_line(message["_inReplyTo"][-1])
        mime["References"] = one_line(" ".join(message["_inReplyTo"]))
    for header in message.get("internetMessageHeaders", []):
        if header["name"].lower() in _OWN_FIELDS:
            continue
        if FIELD_NAME.match(header["name"]):  # names are checked when stored; older state may hold others
            mime[header["name"]] = one_line(header["value"])
    body = message.get("body") or {"contentType": "text", "content": ""}
    mime.set_content(body["content"], subtype="html" if body["contentType"] == "html" else "plain")
    for att in attachments:
        maintype, subtype = media_type(att["contentType"])
        if att.get("attachmentType") == "item":  # an attached mail travels as a message, not encoded bytes
            mime.add_attachment(BytesParser(policy=policy.default).parsebytes(att["content"]),
                                filename=one_line(att["name"]))
            continue
        mime.add_attachment(att["content"], maintype=maintype, subtype=subtype, filename=one_line(att["name"]),
                            disposition="inline" if att["isInline"] else "attachment",
                            cid=f"<{one_line(att['contentId'])}>" if att.get("contentId") else None)
    if mime.is_multipart():  # the same message always exports to the same bytes
        mime.set_boundary("=_" + hashlib.sha256(message.get("id", "").encode()).hexdigest()[:32])
    return mime.as_bytes()


def stored_mime(store: MailStore, message: dict) -> bytes:
    """A stored message's MIME: as it arrived, or built from what is stored (Graph's ``$value``, .eml)."""
    return store.raw_mime(message["id"]) or build_eml(message, store.attachments(message["id"], with_content=True))
