"""The message model, checked on construction, rendered to Graph JSON or to MIME (stdlib email)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, make_msgid

from airflow_graph_mail.mail.attachments import Attachment, expand_sources, inline_images
from airflow_graph_mail.mail.errors import MessageValidationError
from airflow_graph_mail.mail.recipients import Recipient, check_duplicates, check_recipient_count, parse_recipients

BODY_TYPES = ("html", "text")
IMPORTANCES = ("low", "normal", "high")
_CID_REFERENCE = re.compile(r"""cid:([^\s"'()<>]+)""", re.IGNORECASE)
_RECIPIENT_FIELDS = {"to": "toRecipients", "cc": "ccRecipients", "bcc": "bccRecipients", "reply_to": "replyTo"}


def _no_line_breaks(field_name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        raise MessageValidationError(field_name, "must not contain a line break (CR or LF)")


def _choice(field_name: str, value: str, allowed: tuple[str, ...]) -> str:
    lowered = str(value).lower()
    if lowered not in allowed:
        raise MessageValidationError(field_name, f"{value!r} is not one of {', '.join(allowed)}")
    return lowered


@dataclass
class Message:
    """A mail as a DAG author thinks of it; recipients accept strings, lists or Recipient objects."""

    to: list[Recipient] = field(default_factory=list)
    subject: str = ""
    body: str = ""
    body_type: str = "html"
    cc: list[Recipient] = field(default_factory=list)
    bcc: list[Recipient] = field(default_factory=list)
    reply_to: list[Recipient] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    importance: str = "normal"
    headers: dict[str, str] = field(default_factory=dict)
    inline_images: dict | list | None = None

    def __post_init__(self):
        for name in _RECIPIENT_FIELDS:
            setattr(self, name, parse_recipients(getattr(self, name), field=name))
        check_recipient_count(self.to, self.cc, self.bcc)
        check_duplicates({"to": self.to, "cc": self.cc, "bcc": self.bcc})
        self.subject = "" if self.subject is None else str(self.subject)
        _no_line_breaks("subject", self.subject)
        self.body = "" if self.body is None else str(self.body)
        self.body_type = _choice("body_type", self.body_type, BODY_TYPES)
        self.importance = _choice("importance", self.importance, IMPORTANCES)
        self.attachments = expand_sources(self.attachments) + inline_images(self.inline_images)
        self.inline_images = None  # now part of attachments
        self._check_inline_references()
        self.headers = dict(self.headers or {})
        for name, value in self.headers.items():
            if not str(name).lower().startswith("x-"):
                raise MessageValidationError(
                    "headers", f"{name!r}: Graph accepts only custom headers whose name starts with 'x-'"
                )
            _no_line_breaks(f"headers[{name}]", str(value))

    def _check_inline_references(self) -> None:
        """Every cid: in an HTML body must name an inline image, or the mail shows a broken image."""
        content_ids = [a.content_id for a in self.attachments if a.content_id]
        duplicates = sorted({c for c in content_ids if content_ids.count(c) > 1})
        if duplicates:
            raise MessageValidationError("inline_images", f"content id {duplicates[0]!r} is used twice")
        if self.body_type != "html":
            return
        known = {c.lower() for c in content_ids}
        for reference in _CID_REFERENCE.findall(self.body):
            if reference.lower() not in known:
                names = ", ".join(content_ids) or "none"
                raise MessageValidationError(
                    "body", f"the body shows cid:{reference} but no inline image has that content id "
                    f"(inline images: {names}); add it to inline_images")

    @property
    def size(self) -> int:
        """Bytes Exchange counts against the message size limit: body and attachments, before encoding."""
        return len(self.subject.encode("utf-8")) + len(self.body.encode("utf-8")) + \
            sum(a.size for a in self.attachments)

    @property
    def recipient_count(self) -> int:
        return len(self.to) + len(self.cc) + len(self.bcc)

    def require_recipients(self) -> None:
        if not self.recipient_count:
            raise MessageValidationError("to", "no recipients: give at least one address in to, cc or bcc")

    def to_graph(self, *, with_attachments: bool = True) -> dict:
        """Graph's message JSON (camelCase names; attachments inline as base64 unless left out)."""
        graph: dict = {
            "subject": self.subject,
            "body": {"contentType": self.body_type, "content": self.body},
            "importance": self.importance,
        }
        for name, graph_name in _RECIPIENT_FIELDS.items():
            recipients = getattr(self, name)
            if recipients:
                graph[graph_name] = [r.to_graph() for r in recipients]
        if self.headers:
            graph["internetMessageHeaders"] = [{"name": k, "value": str(v)} for k, v in self.headers.items()]
        if self.attachments and with_attachments:
            graph["attachments"] = [a.to_graph() for a in self.attachments]
        return graph

    def to_mime(self, sender: str | None = None) -> bytes:
        """RFC 5322 bytes, for Graph's MIME endpoints; Bcc is kept because Graph reads it from the MIME."""
        mime = EmailMessage(policy=SMTP)
        if sender:
            mime["From"] = sender
        for name, header in (("to", "To"), ("cc", "Cc"), ("bcc", "Bcc"), ("reply_to", "Reply-To")):
            recipients = getattr(self, name)
            if recipients:
                mime[header] = ", ".join(formataddr((r.name, r.address)) for r in recipients)
        mime["Subject"] = self.subject
        mime["Date"] = formatdate(localtime=False)
        mime["Message-ID"] = make_msgid()
        if self.importance != "normal":
            mime["Importance"] = self.importance
        for name, value in self.headers.items():
            mime[name] = str(value)
        mime.set_content(self.body, subtype="html" if self.body_type == "html" else "plain")
        for attachment in self.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            mime.add_attachment(
                attachment.read(),
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=attachment.name,
                disposition="inline" if attachment.is_inline else "attachment",
                cid=f"<{attachment.content_id}>" if attachment.content_id else None,
            )
        return mime.as_bytes()


def graph_message(message: Message | dict, *, require_recipients: bool) -> dict:
    """Either form -> Graph JSON. A dict is Graph's own shape (pasted from Microsoft's docs): checked, kept."""
    if isinstance(message, Message):
        if require_recipients:
            message.require_recipients()
        return message.to_graph()
    if not isinstance(message, dict):
        raise MessageValidationError("message", f"expected a Message or a Graph message dict, not {type(message).__name__}")
    fields = {key.lower(): key for key in message}
    counts = []
    for name, graph_name in _RECIPIENT_FIELDS.items():
        key = fields.get(graph_name.lower())
        if key is None:
            continue
        entries = message[key]
        if not isinstance(entries, list):
            raise MessageValidationError(graph_name, "must be a list of {'emailAddress': {'address': ...}}")
        for entry in entries:
            address = (entry.get("emailAddress") or {}).get("address") if isinstance(entry, dict) else None
            if not address:
                raise MessageValidationError(graph_name, f"recipient {entry!r} has no emailAddress.address")
        parsed = parse_recipients(entries, field=graph_name)
        if name != "reply_to":
            counts.append(parsed)
    check_recipient_count(*counts)
    if require_recipients and not sum(map(len, counts)):
        raise MessageValidationError("toRecipients", "no recipients: give at least one address")
    subject = message.get(fields.get("subject", "subject"))
    if isinstance(subject, str):
        _no_line_breaks("subject", subject)
    return message
