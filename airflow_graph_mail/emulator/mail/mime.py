"""MIME in (a base64 request body, as Graph takes it) and out (.eml files of stored messages)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses

from airflow_graph_mail.emulator.wire import bad_request

INVALID_MIME = ("ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
_IMPORTANCE = {"1": "high", "2": "high", "3": "normal", "4": "low", "5": "low"}


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
                           "content": body.get_content()}
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
    parts = []
    for r in recipients:
        email = r["emailAddress"]
        parts.append(f'"{email["name"]}" <{email["address"]}>' if email.get("name") else email["address"])
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
    mime["Subject"] = message.get("subject", "")
    when = message.get("sentDateTime") or message.get("createdDateTime")
    if when:
        mime["Date"] = format_datetime(dt.datetime.fromisoformat(when.replace("Z", "+00:00")))
    if message.get("internetMessageId"):
        mime["Message-ID"] = message["internetMessageId"]
    if message.get("importance", "normal") != "normal":
        mime["Importance"] = message["importance"]
    for header in message.get("internetMessageHeaders", []):
        mime[header["name"]] = header["value"]
    body = message.get("body") or {"contentType": "text", "content": ""}
    mime.set_content(body["content"], subtype="html" if body["contentType"] == "html" else "plain")
    for att in attachments:
        maintype, _, subtype = att["contentType"].partition("/")
        mime.add_attachment(att["content"], maintype=maintype or "application", subtype=subtype or "octet-stream",
                            filename=att["name"], disposition="inline" if att["isInline"] else "attachment",
                            cid=f"<{att['contentId']}>" if att.get("contentId") else None)
    if mime.is_multipart():  # the same message always exports to the same bytes
        mime.set_boundary("=_" + hashlib.sha256(message.get("id", "").encode()).hexdigest()[:32])
    return mime.as_bytes()

