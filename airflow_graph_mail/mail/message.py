"""The message model, checked on construction, rendered to Graph JSON or to MIME (stdlib email)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from typing import Any

from airflow_graph_mail.errors import MessageValidationError
from airflow_graph_mail.mail.attachments import MAX_GLOB_MATCHES, expand_sources, inline_images
from airflow_graph_mail.mail.headers import check_custom_header, check_headers, no_line_breaks, text
from airflow_graph_mail.mail.recipients import (
    RECIPIENT_FIELDS,
    Recipient,
    ascii_domain,
    check_duplicates,
    check_recipient_count,
    parse_recipients,
)

BODY_TYPES = ("html", "text")
IMPORTANCES = ("low", "normal", "high")
_CID_REFERENCE = re.compile(r"""cid:([^\s"'()<>]+)""", re.IGNORECASE)


def _choice(field_name: str, value, allowed: tuple[str, ...]) -> str:
    lowered = text(field_name, value).lower()
    if lowered not in allowed:
        raise MessageValidationError(field_name, f"{value!r} is not one of {', '.join(allowed)}")
    return lowered


def mime_address(field: str, recipient: Recipient) -> Address:
    """A recipient as a MIME header carries it: an IDN domain as A-labels (RFC 5890), the display name
    encoded by the email package. A non-ASCII local part needs SMTPUTF8, which MIME headers here cannot
    carry, so it is refused rather than mangled."""
    local, _, domain = recipient.address.rpartition("@")
    if not local.isascii():
        raise MessageValidationError(field, f"{recipient.address!r}: a non-ASCII local part cannot be written "
                                     "in a MIME header; send without custom non-x- headers (Graph's JSON takes it)")
    return Address(display_name=recipient.name, username=local, domain=ascii_domain(domain))


@dataclass
class Message:
    """A mail as a DAG author thinks of it; recipients accept strings, lists or Recipient objects."""

    # Given as users write them (a string, a list, Recipient objects, Graph dicts; paths, globs, URIs...);
    # after construction every recipient field is a list of Recipient and ``attachments`` of Attachment.
    to: Any = field(default_factory=list)
    subject: Any = ""
    body: Any = ""
    body_type: str = "html"
    cc: Any = field(default_factory=list)
    bcc: Any = field(default_factory=list)
    reply_to: Any = field(default_factory=list)
    attachments: Any = field(default_factory=list)
    importance: str = "normal"
    headers: Any = field(default_factory=dict)
    inline_images: Any = None
    max_glob_matches: int = field(default=MAX_GLOB_MATCHES, repr=False, compare=False)

    def __post_init__(self):
        for name in RECIPIENT_FIELDS:
            setattr(self, name, parse_recipients(getattr(self, name), field=name))
        check_recipient_count(self.to, self.cc, self.bcc)
        check_duplicates({"to": self.to, "cc": self.cc, "bcc": self.bcc})
        self.subject = no_line_breaks("subject", text("subject", self.subject))
        self.body = text("body", self.body)
        self.body_type = _choice("body_type", self.body_type, BODY_TYPES)
        self.importance = _choice("importance", self.importance, IMPORTANCES)
        self.attachments = expand_sources(self.attachments, max_glob_matches=self.max_glob_matches) + \
            inline_images(self.inline_images, max_glob_matches=self.max_glob_matches)
        self.inline_images = None  # now part of attachments
        self._check_inline_references()
        self.headers = check_headers("headers", self.headers)
        for name in self.headers:
            check_custom_header("headers", name)

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
    def text_size(self) -> int:
        """Bytes of the subject and body."""
        return len(self.subject.encode("utf-8")) + len(self.body.encode("utf-8"))

    @property
    def size(self) -> int:
        """Bytes Exchange counts against the message size limit: body and attachments, before encoding."""
        return self.text_size + sum(a.size for a in self.attachments)

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
        for name, graph_name in RECIPIENT_FIELDS.items():
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
                mime[header] = [mime_address(name, r) for r in recipients]
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

