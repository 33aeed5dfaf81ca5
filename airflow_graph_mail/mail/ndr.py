"""Non-delivery reports (NDRs) as Exchange writes them, read with the stdlib: who did not get a message, and why.

An NDR is a ``multipart/report; report-type=delivery-status`` message (RFC 6522): a part for people, a
``message/delivery-status`` part (RFC 3464) with one block per recipient (``Final-Recipient``, ``Action``,
``Status``, ``Diagnostic-Code``), and the original message or its headers (``text/rfc822-headers``). Exchange
stores it with the message class ``REPORT.IPM.Note.NDR`` (the extended property ``String 0x001A``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email import policy
from email.message import Message as MimeMessage
from email.parser import BytesParser, HeaderParser

# PidTagMessageClass, and the class Exchange gives a non-delivery report.
MESSAGE_CLASS_PROPERTY = "String 0x001A"
NDR_CLASS = "REPORT.IPM.Note.NDR"
NDR_FILTER = (f"singleValueExtendedProperties/Any(ep: ep/id eq '{MESSAGE_CLASS_PROPERTY}' and "
              f"ep/value eq '{NDR_CLASS}')")
# The header every keyed message carries (a digest of its idempotency key: no DAG or row names leave the
# tenant), which Exchange copies into the NDR with the rest of the original's headers.
REF_HEADER = "x-airflow-graph-mail-ref"

# Enhanced status codes (RFC 3463) Exchange Online uses most, in words. Others fall back to their class.
MEANINGS = {
    "5.1.0": "sender or recipient address rejected",
    "5.1.1": "recipient not found",
    "5.1.10": "recipient not found",
    "5.1.8": "sender blocked from sending (access denied, bad outbound sender)",
    "5.1.90": "sender reached its daily recipient limit",
    "5.2.1": "recipient's mailbox is disabled",
    "5.2.2": "recipient's mailbox is full",
    "5.2.3": "message too large for the recipient",
    "5.4.1": "recipient address rejected: access denied (relay not allowed)",
    "5.4.14": "routing loop detected (hop count exceeded)",
    "5.4.300": "message expired before it could be delivered",
    "5.4.316": "recipient's mail server refused the connection",
    "5.6.11": "message content rejected (invalid characters)",
    "5.7.1": "rejected by policy (delivery not authorized)",
    "5.7.57": "sender not authenticated",
    "5.7.133": "rejected by policy: the group accepts mail from its organization only",
    "5.7.134": "rejected by policy: the mailbox accepts mail from its organization only",
    "5.7.509": "rejected by policy: the sender's domain fails DMARC",
    "5.7.708": "rejected by policy: the sender's tenant is blocked from sending",
    "4.4.7": "message expired in the queue (delivery gave up)",
}
_SUBJECTS = {"1": "addressing", "2": "recipient's mailbox", "3": "recipient's mail system", "4": "network or routing",
             "5": "mail protocol", "6": "message content", "7": "security or policy"}


def meaning(status: str) -> str:
    """An enhanced status code in words: the known code, else its class and subject (RFC 3463)."""
    if status in MEANINGS:
        return MEANINGS[status]
    parts = status.split(".")
    kind = {"4": "temporary failure", "5": "permanent failure"}.get(parts[0], "failure")
    subject = _SUBJECTS.get(parts[1] if len(parts) > 1 else "", "")
    return f"{kind} ({subject})" if subject else kind


def ref_for(key: str) -> str:
    """What REF_HEADER holds for a message sent with this idempotency key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Bounce:
    address: str
    status: str
    action: str
    diagnostic: str

    @property
    def meaning(self) -> str:
        return meaning(self.status)


@dataclass(frozen=True)
class Report:
    bounces: list[Bounce]
    original_message_id: str
    original_subject: str
    ref: str  # REF_HEADER of the original, "" when it had none


def read_report(mime: bytes) -> Report | None:
    """The failed recipients of an NDR's MIME, and what identifies the original; None if it is not one."""
    message = BytesParser(policy=policy.default).parsebytes(mime)
    if message.get_content_type() != "multipart/report" or \
            str(message.get_param("report-type", "")).lower() != "delivery-status":
        return None
    bounces: list[Bounce] = []
    original: MimeMessage | None = None
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            bounces.extend(_failed(part))
        elif kind == "text/rfc822-headers" and original is None:
            original = HeaderParser(policy=policy.default).parsestr(part.get_content())
        elif kind == "message/rfc822" and original is None:
            attached = part.get_payload(0)
            original = attached if isinstance(attached, MimeMessage) else None
    if original is None:
        original = MimeMessage()
    return Report(bounces, str(original.get("Message-ID", "")).strip(), str(original.get("Subject", "")),
                  str(original.get(REF_HEADER, "")).strip())


def _failed(part: MimeMessage) -> list[Bounce]:
    """The recipient blocks (after the per-message block) whose Action is failed."""
    out = []
    for block in part.get_payload() or []:
        if not isinstance(block, MimeMessage):
            continue
        recipient = str(block.get("Final-Recipient", "") or block.get("Original-Recipient", ""))
        if not recipient or str(block.get("Action", "")).strip().lower() != "failed":
            continue
        address = recipient.partition(";")[2].strip() if ";" in recipient else recipient.strip()
        out.append(Bounce(address=address, status=str(block.get("Status", "")).strip(), action="failed",
                          diagnostic=" ".join(str(block.get("Diagnostic-Code", "")).split())))
    return out
