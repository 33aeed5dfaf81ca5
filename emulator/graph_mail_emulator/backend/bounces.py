"""Non-delivery as Exchange Online does it: which recipients bounce, and the report their sender gets.

A recipient bounces when a rule names it (``--bounce 'full@contoso.com=5.2.2'``, ``*@gone.example=5.1.1``),
or with 5.1.10 when its domain is one of the tenant's accepted domains and no user there has the address.
The accepted domains are the tenant's own (contoso.onmicrosoft.com), those configured, and every domain its
users' addresses are in: Exchange gives a mailbox an address only in an accepted domain, so the sender's own
domain (contoso.com) is always one.
The sender then finds in its Inbox, after a delay, a report of class REPORT.IPM.Note.NDR whose MIME is a
``multipart/report`` (RFC 6522) with a ``message/delivery-status`` part (RFC 3464) and the original's
headers, as Exchange writes it.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.utils import format_datetime
from html import escape

from graph_mail_emulator.backend.text import one_line

# PidTagMessageClass as an extended property id, and the class Exchange gives a non-delivery report.
MESSAGE_CLASS_PROPERTY = "String 0x001A"
NDR_CLASS = "REPORT.IPM.Note.NDR"

_STATUS = re.compile(r"^[45]\.\d{1,3}\.\d{1,3}$")
# What Exchange Online's Diagnostic-Code says for the codes it gives most.
_DIAGNOSTICS = {
    "5.1.10": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient {address} not found by SMTP address lookup",
    "5.1.1": "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
    "5.2.2": "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuota"
             "Exceeded",
    "5.2.3": "550 5.2.3 RESOLVER.RST.RecipSizeLimit; message too large for this recipient",
    "5.4.1": "550 5.4.1 Recipient address rejected: Access denied",
    "5.7.1": "550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized",
    # Exchange Online's sending limits (Microsoft's NDR table, "Troubleshoot outbound sending limits", and
    # NDRs users quote; the 5.2.2 variant is the recipient rate limit's other wording).
    "5.1.90": "550 5.1.90 Your message can't be sent because you've reached your daily limit for message "
              "recipients",
    "5.7.233": "550 5.7.233 - Your message can't be sent because your tenant has exceeded its daily limit for "
               "sending email to external recipients (tenant external recipient rate limit)",
    "5.7.232": "550 5.7.232 - Your message can't be sent because your trial tenant has exceeded its daily limit "
               "for sending email to external recipients (tenant external recipient rate limit)",
    "5.5.3": "550 5.5.3 RESOLVER.ADR.RecipLimit; too many recipients",
}
# The recipient rate limit's NDR in its submission-quota wording (Limits.recipient_rate_status "5.2.2").
SUBMISSION_QUOTA = ("554 5.2.2 mailbox full; STOREDRV.Submission.Exception:SubmissionQuotaExceededException; The "
                    "message can't be submitted because the sender's submission quota was exceeded")
# What the report tells people, per code (Exchange's NDRs say it at more length).
_FOR_PEOPLE = {"5.1.10": "the address wasn't found", "5.1.1": "the address wasn't found",
               "5.2.2": "the recipient's mailbox is full", "5.2.3": "the message is too large for the recipient",
               "5.4.1": "the recipient's domain doesn't accept mail from here",
               "5.7.1": "the recipient doesn't accept mail from this sender",
               "5.1.90": "you've reached your daily limit for message recipients",
               "5.7.233": "your tenant has exceeded its daily limit for sending email to external recipients",
               "5.7.232": "your trial tenant has exceeded its daily limit for sending email to external recipients",
               "5.5.3": "there are too many recipients"}
REPORTING_MTA = "emulator.prod.outlook.com"
POSTMASTER = "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e"


def parse_rule(text: str) -> tuple[str, str]:
    """``address-or-pattern=status`` (status defaults to 5.1.10), as --bounce takes it."""
    pattern, _, status = text.partition("=")
    pattern, status = pattern.strip().lower(), (status.strip() or "5.1.10")
    if "@" not in pattern or not _STATUS.match(status):
        raise ValueError(f"--bounce {text!r}: give ADDRESS=STATUS, e.g. full@contoso.com=5.2.2 or "
                         "*@gone.example=5.1.1 (STATUS an enhanced status code such as 5.1.10)")
    return pattern, status


@dataclass
class Failure:
    """One recipient that did not get the message; ``diagnostic`` and ``note`` (what people read) default to
    Exchange's words for the status."""

    address: str
    status: str
    diagnostic_text: str = ""
    note: str = ""

    @property
    def diagnostic(self) -> str:
        template = self.diagnostic_text or _DIAGNOSTICS.get(self.status, f"550 {self.status} Delivery failed")
        return "smtp;" + template.format(address=self.address)

    @property
    def for_people(self) -> str:
        return self.note or _FOR_PEOPLE.get(self.status, "delivery failed")


class Bounces:
    """The tenant's accepted domains, the bounce rules, and how long an NDR takes to arrive."""

    def __init__(self, accepted_domains: tuple[str, ...] = (), rules: tuple[str, ...] = (), delay: float = 1.0):
        self.initial = (tuple(d.lower() for d in accepted_domains), tuple(parse_rule(r) for r in rules), delay)
        self.reset()

    def reset(self) -> None:
        """Back to the start's configuration."""
        domains, rules, self.delay = self.initial
        self.accepted_domains = set(domains)
        self.rules = list(rules)

    def add(self, pattern: str, status: str = "5.1.10") -> None:
        """Mail to ``pattern`` (an address, or with * wildcards) bounces with this enhanced status code, until
        ``reset()``."""
        self.rules.append(parse_rule(f"{pattern}={status}"))

    def status_for(self, address: str, is_user: bool, user_domains: Collection[str] = frozenset()) -> str | None:
        """The code this recipient bounces with, or None when it is delivered (``user_domains``: the domains
        of the tenant's users, accepted domains too)."""
        lowered = address.lower()
        for pattern, status in self.rules:
            if fnmatch.fnmatchcase(lowered, pattern):
                return status
        domain = lowered.rpartition("@")[2]
        if (domain in self.accepted_domains or domain in user_domains) and not is_user:
            return "5.1.10"
        return None


def report(original: dict, original_mime: bytes, sender: dict, failures: list[Failure], tenant_domain: str,
           stamp: str) -> tuple[dict, bytes]:
    """The NDR for one sent message: (the message as the store keeps it, its MIME)."""
    subject = f"Undeliverable: {original.get('subject', '')}"
    postmaster = {"emailAddress": {"name": "Microsoft Outlook", "address": f"{POSTMASTER}@{tenant_domain}"}}
    message_id = f"<{uuid.uuid4().hex}@{REPORTING_MTA}>"
    listed = "".join(f"<li>{escape(f.address, False)}: {escape(f.for_people, False)} ({f.status})</li>"
                     for f in failures)
    html = (f"<p>Your message couldn't be delivered to these recipients:</p><ul>{listed}</ul>"
            f"<p>Diagnostic information for administrators: generating server {REPORTING_MTA}</p>")
    mime = _report_mime(original, original_mime, sender, postmaster, failures, subject, message_id, stamp, html)
    stored = {"subject": subject, "from": postmaster, "sender": postmaster, "toRecipients": [sender],
              "body": {"contentType": "html", "content": html}, "importance": "high", "isRead": False,
              "isDraft": False, "internetMessageId": message_id, "sentDateTime": stamp, "receivedDateTime": stamp,
              "singleValueExtendedProperties": [{"id": MESSAGE_CLASS_PROPERTY, "value": NDR_CLASS}],
              "_reportFor": original.get("internetMessageId", "")}  # the viewer's link to the original
    return stored, mime


def _report_mime(original: dict, original_mime: bytes, sender: dict, postmaster: dict, failures: list[Failure],
                 subject: str, message_id: str, stamp: str, html: str) -> bytes:
    when = _parse_iso(stamp)
    mime = EmailMessage(policy=policy.SMTP)
    mime["From"] = f"{postmaster['emailAddress']['name']} <{postmaster['emailAddress']['address']}>"
    mime["To"] = sender["emailAddress"]["address"]
    mime["Date"] = format_datetime(when)
    mime["Subject"] = one_line(subject)  # the original's subject, which may hold a line break
    mime["Message-ID"] = message_id
    if original.get("internetMessageId"):
        mime["In-Reply-To"] = one_line(original["internetMessageId"])
        mime["References"] = one_line(original["internetMessageId"])
    mime["Auto-Submitted"] = "auto-replied"
    mime["X-MS-Exchange-Message-Is-Ndr"] = ""
    mime["Content-Language"] = "en-US"
    mime.set_type("multipart/report")
    mime.set_param("report-type", "delivery-status")
    people = EmailMessage(policy=policy.SMTP)
    people.set_content(html, subtype="html")
    fields = policy.SMTP.clone(max_line_length=998)  # RFC 3464 fields are text, never encoded-words
    status = Message(policy=policy.SMTP)
    status["Content-Type"] = "message/delivery-status"
    per_message = Message(policy=fields)
    per_message["Reporting-MTA"] = f"dns;{REPORTING_MTA}"
    per_message["Arrival-Date"] = format_datetime(when)
    blocks: list[Message | str] = [per_message]
    for failure in failures:
        block = Message(policy=fields)
        block["Original-Recipient"] = f"rfc822;{failure.address}"
        block["Final-Recipient"] = f"rfc822;{failure.address}"
        block["Action"] = "failed"
        block["Status"] = failure.status
        block["Diagnostic-Code"] = failure.diagnostic
        blocks.append(block)
    status.set_payload(blocks)
    headers = Message(policy=policy.SMTP)
    headers["Content-Type"] = "text/rfc822-headers"
    headers.set_payload(_header_block(original_mime).decode("ascii", "replace"))
    mime.set_payload([people, status, headers])
    mime.set_boundary("=_report_" + uuid.uuid4().hex)
    return mime.as_bytes()


def _header_block(mime: bytes) -> bytes:
    """The header section of a message (up to the first empty line, whichever line ending it uses)."""
    ends = [i for i in (mime.find(b"\r\n\r\n"), mime.find(b"\n\n")) if i >= 0]
    return (mime[:min(ends)] if ends else mime).rstrip(b"\r\n") + b"\r\n"


def _parse_iso(stamp: str):
    import datetime as dt

    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
