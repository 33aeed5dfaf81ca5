"""Mail from outside the tenant: what Exchange Online does with a message that arrives over SMTP.

It lands in each addressed mailbox of the tenant (a folder of it, the Inbox by default), unread, with the
headers Exchange adds on top (``Authentication-Results`` with its SPF/DKIM/DMARC verdict, ``Received``) above
the sender's own (a forged ``Authentication-Results`` the sender wrote stays below Exchange's). A message
attached to it (``message/rfc822``) becomes an item attachment. It is hostile input: stored as it came,
refused only for its size; whatever reads it back (Graph's answers, .eml, the viewer) writes it safely.

Tests give it as fields (``receive``) or as an .eml (``receive_eml``); large attachments as file paths,
streamed into the store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import mimetypes
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, parseaddr
from pathlib import Path

from graph_mail_emulator.backend.changes import ChangeLog
from graph_mail_emulator.backend.clock import Clock
from graph_mail_emulator.backend.limits import Limits, message_size
from graph_mail_emulator.backend.mime import text_of
from graph_mail_emulator.backend.store import FOLDERS, IMMUTABLE_ID, Mailbox, MailStore, new_id
from graph_mail_emulator.backend.text import one_line, preview

SENDER_IP = "203.0.113.25"  # TEST-NET-3: the outside server the mail came from
RECEIVED_BY = "graph-mail-emulator.mail.protection.invalid"
_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+$")
_HASHED = 1024 * 1024
# The headers Exchange writes itself (its verdict and its hop), on top of the sender's own.
_VERDICTS = {
    "pass": "spf=pass (sender IP is {ip}) smtp.mailfrom={domain}; dkim=pass (signature was verified) "
            "header.d={domain};dmarc=pass action=none header.from={domain};compauth=pass reason=100",
    "fail": "spf=fail (sender IP is {ip}) smtp.mailfrom={domain}; dkim=none (message not signed) header.d=none;"
            "dmarc=fail action=oreject header.from={domain};compauth=fail reason=000",
    "none": "spf=none (sender IP is {ip}) smtp.mailfrom={domain}; dkim=none (message not signed) header.d=none;"
            "dmarc=none action=none header.from={domain};compauth=fail reason=001",
}


# What the email package raises on a mail it cannot read (it fails in many ways on what strangers send).
UNREADABLE = (ValueError, TypeError, IndexError, KeyError, AttributeError, LookupError)


class InboundError(ValueError):
    """Mail that cannot arrive: a recipient outside the tenant, no sender, over the size limit, not a mail."""


class Inbound:
    """``limits()`` gives the tenant's limits of the moment (tests change them)."""

    def __init__(self, store: MailStore, clock: Clock, changes: ChangeLog, limits: Callable[[], Limits],
                 tenant_domain: str):
        self.store = store
        self.clock = clock
        self.changes = changes
        self.limits = limits
        self.tenant_domain = tenant_domain.lower()

    # -- the two ways in -----------------------------------------------------------------------------

    def receive(self, to: str | Sequence[str], sender: str, subject: str = "", body: str = "",
                body_type: str = "text", cc: str | Sequence[str] = (), reply_to: str | Sequence[str] = (),
                attachments: Iterable = (), headers: dict | Iterable[tuple[str, str]] = (),
                authentication: str = "pass", folder: str = "inbox", in_reply_to: str | None = None,
                message_id: str | None = None) -> list[dict]:
        """A mail from outside, given as fields, in each tenant mailbox of ``to`` and ``cc``: one entry
        ({id, immutableId, mailbox, folder, internetMessageId, conversationId}) per mailbox reached."""
        name, address = _person(sender, "sender")
        if body_type not in ("text", "html"):
            raise InboundError(f"body_type {body_type!r}: 'text' or 'html'")
        recipients = {"toRecipients": [_recipient(a, "to") for a in _many(to)],
                      "ccRecipients": [_recipient(a, "cc") for a in _many(cc)],
                      "replyTo": [_recipient(a, "reply_to") for a in _many(reply_to)]}
        if not recipients["toRecipients"] and not recipients["ccRecipients"]:
            raise InboundError("to: give the tenant mailbox(es) the mail arrives in")
        stored = [_attachment(a, index) for index, a in enumerate(attachments)]
        extra = list(headers.items()) if isinstance(headers, dict) else [tuple(h) for h in headers]
        when = self.clock.iso()
        message_id = message_id or f"<{uuid.uuid4().hex}@{_domain(address) or 'outside.invalid'}>"
        own = [("From", _label(name, address)), ("To", _labels(recipients["toRecipients"])),
               *((("Cc", _labels(recipients["ccRecipients"])),) if recipients["ccRecipients"] else ()),
               ("Subject", subject), ("Date", _rfc5322_date(when)), ("Message-ID", message_id),
               *((("In-Reply-To", in_reply_to), ("References", in_reply_to)) if in_reply_to else ()),
               ("MIME-Version", "1.0"),
               ("Content-Type", "multipart/mixed" if stored else f"text/{'html' if body_type == 'html' else 'plain'}"
                                                                  "; charset=utf-8"),
               *[(str(k), str(v)) for k, v in extra]]
        message = {"subject": subject, "body": {"contentType": body_type, "content": body},
                   "from": {"emailAddress": {"name": name or address, "address": address}},
                   **recipients, "internetMessageId": message_id, "sentDateTime": when,
                   "_headers": own, "_inReplyTo": [in_reply_to] if in_reply_to else []}
        return self._arrive(message, stored, None, folder, authentication, address)

    def receive_eml(self, eml: bytes | str | Path, to: str | Sequence[str] | None = None, folder: str = "inbox",
                    authentication: str = "pass") -> list[dict]:
        """An .eml from outside, in the tenant mailboxes ``to`` (default: its To and Cc addresses that are
        the tenant's). It is parsed whole; for attachments of many megabytes use ``receive`` with paths."""
        raw = Path(eml).read_bytes() if isinstance(eml, (str, Path)) else bytes(eml)
        try:
            message, attachments, address = read_eml(raw)
        except InboundError:
            raise
        except UNREADABLE as err:
            raise InboundError(f"eml: not a mail the emulator can read ({type(err).__name__})") from None
        if to is not None:
            targets = [_recipient(a, "to") for a in _many(to)]
        else:
            targets = [r for r in message["toRecipients"] + message["ccRecipients"]
                       if self._in_tenant(r["emailAddress"]["address"])]
            if not targets:
                raise InboundError("eml: none of its To or Cc addresses is a mailbox of the tenant; give to=")
        message["_targets"] = targets
        return self._arrive(message, attachments, raw, folder, authentication, address)

    def expire_delta_links(self, status: int = 410) -> None:
        """Every delta and next link issued so far stops working, as when Exchange drops a sync state: the
        next call answers ``status`` (410, with ``Location`` the initial delta URL, or 400) and the code
        ``syncStateNotFound``."""
        self.changes.expire(status)

    # -- what Exchange does with it --------------------------------------------------------------------

    def _arrive(self, message: dict, attachments: list[dict], raw: bytes | None, folder: str,
                authentication: str, sender_address: str) -> list[dict]:
        targets = message.pop("_targets", None) or message["toRecipients"] + message["ccRecipients"]
        addresses = [r["emailAddress"]["address"] for r in targets]
        outside = [a for a in addresses if not self._in_tenant(a)]
        if outside:
            raise InboundError(f"{outside[0]}: not an address of the tenant ({self.tenant_domain} or a user's "
                               "domain); mail from outside lands in the tenant's own mailboxes")
        if folder.lower() not in FOLDERS:
            raise InboundError(f"folder {folder!r}: one of {', '.join(FOLDERS)}")
        attached = sum(a["size"] for a in attachments)
        if message_size(message, attached) > self.limits().message_size_limit:
            raise InboundError(f"the mail is {message_size(message, attached):,} bytes; the tenant's message size "
                               f"limit is {self.limits().message_size_limit:,} (raise it with "
                               "backend.set_limits(message_size_limit=...))")
        mailboxes = self._mailboxes(addresses)  # checked first: a refused mail makes no mailbox
        when = self.clock.iso()
        exchange = [("Authentication-Results", _verdict(authentication, _domain(sender_address))),
                    ("Received", f"from mail.{_domain(sender_address) or 'outside.invalid'} ({SENDER_IP}) by "
                                 f"{RECEIVED_BY} with Microsoft SMTP Server; {_rfc5322_date(when)}")]
        headers = [{"name": _text(k), "value": _text(v)} for k, v in exchange + message.pop("_headers")]
        references = [r for r in message.pop("_inReplyTo") if r]
        mime = None
        if raw is not None:  # the original bytes, under Exchange's own headers (each on one line)
            mime = b"".join(f"{k}: {one_line(v)}\r\n".encode() for k, v in exchange) + raw
        received = {"importance": "normal", "flag": {"flagStatus": "notFlagged"}, "categories": [],
                    "inferenceClassification": "focused", **message, "isRead": False, "isDraft": False,
                    "receivedDateTime": when, "createdDateTime": when, "internetMessageHeaders": headers,
                    "bodyPreview": preview(message["body"]), "sender": message["from"], "bccRecipients": [],
                    "hasAttachments": any(not a["isInline"] for a in attachments)}
        received.setdefault("sentDateTime", when)
        out = []
        with self.store.transaction():
            first = None
            for mailbox in mailboxes:
                copy = {**received, "conversationId": self._conversation(mailbox, references)}
                if first is None:
                    first = self.store.insert(mailbox, folder.lower(), copy, attachments, mime)
                    stored_id = first
                else:
                    stored_id = self.store.insert(mailbox, folder.lower(), copy, [], mime, copy_attachments_of=first)
                stored, _ = self.store.load(mailbox, stored_id)
                out.append({"id": stored["id"], "immutableId": stored[IMMUTABLE_ID], "mailbox": mailbox.address,
                            "folder": folder.lower(), "internetMessageId": stored["internetMessageId"],
                            "conversationId": stored["conversationId"]})
        return out

    def _in_tenant(self, address: str) -> bool:
        return _domain(address) in {self.tenant_domain, *self.store.user_domains}

    def _mailboxes(self, addresses: list[str]) -> list[Mailbox]:
        """The tenant's mailboxes among ``addresses`` (each made a user if it is not one yet), in order, once."""
        out: list[Mailbox] = []
        for address in addresses:
            mailbox = self.store.find_mailbox(address)
            if mailbox is None or not mailbox.is_user:
                mailbox = self.store.add_user(address)
            if all(m.id != mailbox.id for m in out):
                out.append(mailbox)
        return out

    def _conversation(self, mailbox: Mailbox, references: list[str]) -> str:
        """The conversation of the mail it answers (by In-Reply-To or References), else a new one."""
        with self.store.reading() as db:
            for reference in reversed(references):
                row = db.execute("SELECT json_extract(data, '$.conversationId') FROM messages WHERE mailbox_id = ? "
                                 "AND json_extract(data, '$.internetMessageId') = ? LIMIT 1",
                                 (mailbox.id, reference.strip())).fetchone()
                if row and row[0]:
                    return row[0]
        return new_id("AAQkAG")


# -- reading what arrives -------------------------------------------------------------------------------


def read_eml(raw: bytes) -> tuple[dict, list[dict], str]:
    """(message, attachments, the sender's address) from an .eml; attached mails become item attachments."""
    mime = BytesParser(policy=policy.default).parsebytes(raw)
    if not mime.keys():
        raise InboundError("eml: no header fields; give the mail's bytes (RFC 5322)")
    senders = getaddresses([str(mime.get("From", ""))])
    address = next((a for _, a in senders if a), "")
    name = next((n for n, a in senders if a), "")
    message: dict = {"subject": _text(str(mime.get("Subject", ""))),
                     "from": {"emailAddress": {"name": _text(name or address), "address": _text(address)}},
                     "toRecipients": _people(mime.get_all("To")), "ccRecipients": _people(mime.get_all("Cc")),
                     "replyTo": _people(mime.get_all("Reply-To"))}
    if mime.get("Message-ID"):
        message["internetMessageId"] = _text(str(mime["Message-ID"]).strip())
    else:
        message["internetMessageId"] = f"<{uuid.uuid4().hex}@{_domain(address) or 'outside.invalid'}>"
    importance = str(mime.get("Importance", "")).strip().lower()
    if importance in ("low", "normal", "high"):
        message["importance"] = importance
    try:
        sent = dt.datetime.strptime(str(mime.get("Date", "")).strip()[:31], "%a, %d %b %Y %H:%M:%S %z")
        message["sentDateTime"] = sent.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        pass
    body = mime.get_body(preferencelist=("html", "plain"))
    message["body"] = {"contentType": "html" if body is not None and body.get_content_subtype() == "html" else "text",
                       "content": _text(text_of(body)) if body is not None else ""}
    references = str(mime.get("References", "")).split() + str(mime.get("In-Reply-To", "")).split()
    message["_inReplyTo"] = [_text(r) for r in references]
    message["_headers"] = [(k, _unfold(v)) for k, v in mime.raw_items()]
    attachments = [_part(part, index) for index, part in enumerate(mime.iter_attachments())]
    return message, attachments, address


def _part(part: EmailMessage, index: int) -> dict:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload(0) if part.is_multipart() else None
        if not isinstance(inner, Message):
            inner = None
        content = inner.as_bytes(policy=policy.SMTP) if inner is not None else b""
        name = str(inner.get("Subject", "")) if inner is not None else ""
        return _item(name or _filename(part) or f"attachment-{index + 1}.eml", content)
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    cid = str(part.get("Content-ID") or "").strip().strip("<>") or None
    return {"name": _text(_filename(part) or f"attachment-{index + 1}"), "contentType": part.get_content_type(),
            "isInline": part.get_content_disposition() == "inline" and cid is not None, "contentId": cid,
            "content": data, "size": len(data)}


def _filename(part: EmailMessage) -> str:
    try:
        return _text(part.get_filename() or "")
    except (LookupError, ValueError, TypeError):
        return ""


# -- fields given in Python ---------------------------------------------------------------------------


def _attachment(given, index: int) -> dict:
    """(name, bytes or Path[, content type]) or a dict: a file attachment, or {"name", "item": eml} an
    attached mail."""
    if isinstance(given, tuple):
        if len(given) not in (2, 3):
            raise InboundError(f"attachments[{index}]: (name, content) or (name, content, content type)")
        given = {"name": given[0], "content": given[1], **({"contentType": given[2]} if len(given) == 3 else {})}
    if not isinstance(given, dict):
        raise InboundError(f"attachments[{index}]: a tuple or a dict, not {type(given).__name__}")
    if "item" in given:
        content = given["item"]
        raw = Path(content).read_bytes() if isinstance(content, Path) else bytes(content)
        name = given.get("name")
        if not name:
            try:
                name = str(BytesParser(policy=policy.default).parsebytes(raw).get("Subject", ""))
            except UNREADABLE:  # an attached mail that does not parse still arrives
                name = ""
        return _item(str(name or f"attachment-{index + 1}.eml"), raw)
    name, content = given.get("name"), given.get("content", b"")
    if not name:
        raise InboundError(f"attachments[{index}]: a name is required")
    content_type = given.get("contentType") or mimetypes.guess_type(str(name))[0] or "application/octet-stream"
    out = {"name": str(name), "contentType": str(content_type), "isInline": bool(given.get("isInline", False)),
           "contentId": given.get("contentId")}
    if isinstance(content, Path):
        size, digest = 0, hashlib.sha256()
        with content.open("rb") as file:
            while block := file.read(_HASHED):
                size += len(block)
                digest.update(block)
        return {**out, "path": content, "size": size, "sha256": digest.hexdigest()}
    data = content.encode() if isinstance(content, str) else bytes(content)
    return {**out, "content": data, "size": len(data)}


def _item(name: str, content: bytes) -> dict:
    """An attached mail: an item attachment, its bytes the mail's MIME (what ``$value`` gives back)."""
    return {"name": _text(name), "contentType": "message/rfc822", "isInline": False, "contentId": None,
            "content": content, "size": len(content), "attachmentType": "item"}


def _many(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _person(text: str, what: str) -> tuple[str, str]:
    name, address = parseaddr(str(text))
    if not _ADDRESS.match(address):
        raise InboundError(f"{what} {text!r}: an address (name@domain) or 'Name <name@domain>'")
    return name, address


def _recipient(text: str, what: str) -> dict:
    name, address = _person(text, what)
    return {"emailAddress": {"name": name or address, "address": address}}


def _people(values) -> list[dict]:
    return [{"emailAddress": {"name": _text(n or a), "address": _text(a)}}
            for n, a in getaddresses([str(v) for v in values or []]) if a]


def _label(name: str, address: str) -> str:
    return f'"{name}" <{address}>' if name and name != address else address


def _labels(recipients: list[dict]) -> str:
    return ", ".join(_label(r["emailAddress"].get("name", ""), r["emailAddress"]["address"]) for r in recipients)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower() if "@" in address else ""


def _verdict(authentication: str, domain: str) -> str:
    template = _VERDICTS.get(str(authentication).lower())
    return template.format(ip=SENDER_IP, domain=domain or "none") if template else " ".join(str(authentication).split())


def _rfc5322_date(stamp: str) -> str:
    return format_datetime(dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")))


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n[ \t]", " ", value).strip()


def _text(value: str) -> str:
    """Text as the mail gave it, with bytes that are not UTF-8 replaced (the parser keeps them as lone
    surrogates, which JSON and HTML cannot carry)."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
