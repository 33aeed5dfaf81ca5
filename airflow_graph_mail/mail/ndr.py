"""Non-delivery reports (NDRs), read with the stdlib: who did not get a message, and why.

An NDR is a ``multipart/report; report-type=delivery-status`` message (RFC 6522): a part for people, a
``message/delivery-status`` part (RFC 3464) with one block per recipient (``Final-Recipient``, ``Action``,
``Status``, ``Diagnostic-Code``), and the original message or its headers (``text/rfc822-headers``). Exchange
stores it with the message class ``REPORT.IPM.Note.NDR`` (the extended property ``String 0x001A``), and so
files reports that other servers send, which may also come as RFC 6533's ``message/global-delivery-status``,
``message/global`` and ``message/global-headers``, or with a part in base64.

Anyone can send a report, so everything in one is hostile: only the report's own parts are read (never
what the original holds), within limits, header fields as raw text (the stdlib's structured parsers raise
on some malformed values), undecodable bytes replaced; a report the parser gives up on raises
UnreadableReportError, never anything else. A bounce written for people only (no delivery-status part)
is not read.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import quopri
import re
from dataclasses import dataclass
from email import policy
from email.message import Message as MimeMessage
from email.parser import BytesParser, Parser

from airflow_graph_mail.errors import UnreadableReportError
from airflow_graph_mail.mail.idempotency import REF_HEADER
from airflow_graph_mail.mail.recipients import ascii_domain

# PidTagMessageClass, and the class Exchange gives a non-delivery report.
MESSAGE_CLASS_PROPERTY = "String 0x001A"
NDR_CLASS = "REPORT.IPM.Note.NDR"
NDR_FILTER = (f"singleValueExtendedProperties/Any(ep: ep/id eq '{MESSAGE_CLASS_PROPERTY}' and "
              f"ep/value eq '{NDR_CLASS}')")

# What one report may make us read.
MAX_REPORT_PARTS = 20  # body parts of the report (RFC 6522 has 2 or 3)
MAX_RECIPIENT_BLOCKS = 1000  # Exchange's most recipients per message
MAX_DIAGNOSTIC = 500  # characters of a Diagnostic-Code kept
_MAX_FIELD = 1000  # characters of any other field kept

REPORT_TYPES = ("delivery-status", "global-delivery-status")
STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")
HEADER_PARTS = ("text/rfc822-headers", "message/global-headers")
MESSAGE_PARTS = ("message/rfc822", "message/global")
# What the stdlib email package raises on malformed input (unknown charsets, bad base64, parse errors in
# its header parsers, which include IndexError and AttributeError on some values).
PARSER_ERRORS = (LookupError, UnicodeError, ValueError, IndexError, TypeError, AttributeError, binascii.Error,
                 email.errors.MessageError, RecursionError)

_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")  # RFC 6533's EmbeddedUnicodeChar

# Enhanced status codes (RFC 3463) Exchange Online uses most, in words. Others fall back to their class.
MEANINGS = {
    "5.1.0": "sender or recipient address rejected",
    "5.1.1": "recipient not found",
    "5.1.10": "recipient not found",
    "5.1.8": "sender blocked from sending (access denied, bad outbound sender)",
    "5.1.90": "sender reached its daily recipient limit (rate limited: resend later)",
    "5.5.3": "too many recipients in one message (rate limited: resend in smaller messages)",
    "5.7.232": "trial tenant reached its daily limit of external recipients (rate limited: resend later)",
    "5.7.233": "tenant reached its daily limit of external recipients (rate limited: resend later)",
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


# Sender-side limits (Exchange Online's sending limits): the mail was refused for how much the mailbox or the
# tenant sent, not for the address. Resending later (or in smaller messages) delivers it. 5.2.2 is the
# recipient's mailbox being full, except in the wording of the sender's submission quota (the recipient rate
# limit's other NDR).
RATE_LIMITED = {"5.1.90": "resend after the mailbox's 24-hour window frees (10,000 recipients per 24 hours)",
                "5.7.233": "resend after the tenant's 24-hour window of external recipients frees (TERRL)",
                "5.7.232": "resend after the trial tenant's 24-hour window of external recipients frees (TERRL)",
                "5.5.3": "resend in messages with fewer recipients (the mailbox's recipients per message)"}
SUBMISSION_QUOTA = "resend after the mailbox's 24-hour window frees (the sender's submission quota was exceeded)"
_QUOTA = re.compile(r"submission ?quota|SubmissionQuotaExceeded", re.IGNORECASE)
# Statuses that say the address itself is wrong (unknown, disabled, or mail to it not deliverable as written).
ADDRESS = ("5.1.", "5.2.1")


def resend_advice(status: str, diagnostic: str = "") -> str:
    """How to get a rate-limited mail through, or "" when the bounce is not about the sender's limits."""
    if status in RATE_LIMITED:
        return RATE_LIMITED[status]
    if status == "5.2.2" and _QUOTA.search(diagnostic or ""):
        return SUBMISSION_QUOTA
    return ""


def kind(status: str, diagnostic: str = "") -> str:
    """"rate_limited" (the sender's limits: resend later), "address" (the address is wrong), or "other"."""
    if resend_advice(status, diagnostic):
        return "rate_limited"
    return "address" if status.startswith(ADDRESS) else "other"


def meaning(status: str) -> str:
    """An enhanced status code in words: the known code, else its class and subject (RFC 3463)."""
    if status in MEANINGS:
        return MEANINGS[status]
    parts = status.split(".")
    kind = {"4": "temporary failure", "5": "permanent failure"}.get(parts[0], "failure")
    subject = _SUBJECTS.get(parts[1] if len(parts) > 1 else "", "")
    return f"{kind} ({subject})" if subject else kind


def address_key(address: str) -> str:
    """An address as bounces are compared: without case, the domain in IDNA A-labels."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip().lower()
    try:
        domain = ascii_domain(domain)
    except UnicodeError:
        domain = domain.lower()
    return f"{local.lower()}@{domain}"


@dataclass(frozen=True)
class Bounce:
    address: str  # Final-Recipient
    status: str  # the enhanced status code, "" when the report gave none
    action: str
    diagnostic: str
    original_address: str = ""  # Original-Recipient, when the report gives it

    @property
    def meaning(self) -> str:
        if self.status == "5.2.2" and resend_advice(self.status, self.diagnostic):
            return "sender's submission quota exceeded (rate limited: resend later)"
        return meaning(self.status)

    @property
    def kind(self) -> str:
        return kind(self.status, self.diagnostic)

    @property
    def advice(self) -> str:
        return resend_advice(self.status, self.diagnostic)

    @property
    def addresses(self) -> tuple[str, ...]:
        """The addresses it names, the one originally sent to first."""
        return tuple(dict.fromkeys(a for a in (self.original_address, self.address) if a))


@dataclass(frozen=True)
class Report:
    bounces: list[Bounce]
    original_message_id: str
    original_subject: str
    ref: str  # REF_HEADER of the original, "" when it had none
    problems: tuple[str, ...] = ()  # what was not read (the rest was)

    def recipients_bounced(self, recipients: list[str]) -> tuple[list[tuple[str, Bounce]], list[str]]:
        """(the recipient as it was sent to, its bounce) for each failed address that was one of the mail's
        ``recipients``; and the addresses named that were not: a report that carries a mail's ref may come
        from anyone who saw that ref, so it is believed only about that mail's own recipients."""
        known: dict[str, str] = {}
        for address in recipients:
            known.setdefault(address_key(address), address)
        counted, strangers = [], []
        for bounce in self.bounces:
            match = next((known[address_key(a)] for a in bounce.addresses if address_key(a) in known), None)
            if match is None:
                strangers.append(bounce.address)
            else:
                counted.append((match, bounce))
        return counted, list(dict.fromkeys(strangers))


def read_report(mime: bytes) -> Report | None:
    """The failed recipients of an NDR's MIME, and what identifies the original; None if it is not a delivery
    status notification. Raises UnreadableReportError when the email package cannot read it at all."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(mime)
        if message.get_content_type() != "multipart/report" or \
                str(message.get_param("report-type", "")).lower() not in REPORT_TYPES:
            return None
        parts = message.get_payload()
    except RecursionError:
        raise UnreadableReportError("its MIME parts are nested too deeply to read") from None
    except PARSER_ERRORS as err:
        raise UnreadableReportError(f"the email package could not read it ({_error(err)})") from None
    problems: list[str] = []
    if not isinstance(parts, list):
        parts = []
    if len(parts) > MAX_REPORT_PARTS:
        problems.append(f"{len(parts)} body parts; read the first {MAX_REPORT_PARTS}")
        parts = parts[:MAX_REPORT_PARTS]
    blocks: list[MimeMessage] = []
    original: MimeMessage | None = None
    found_status = False
    for number, part in enumerate(parts, 1):
        try:
            kind = part.get_content_type()
            if kind in STATUS_PARTS:
                found_status = True
                blocks.extend(_recipient_blocks(part))
            elif original is None and kind in (*HEADER_PARTS, *MESSAGE_PARTS):
                original = _original_headers(part)
        except PARSER_ERRORS as err:
            problems.append(f"part {number} could not be read ({_error(err)})")
    if not found_status:
        problems.append("no delivery-status part (RFC 3464): a report for people only; read it in Outlook")
    if len(blocks) > MAX_RECIPIENT_BLOCKS:
        problems.append(f"{len(blocks)} recipient blocks; read the first {MAX_RECIPIENT_BLOCKS}")
        blocks = blocks[:MAX_RECIPIENT_BLOCKS]
    bounces = [bounce for bounce in map(_bounce, blocks) if bounce is not None]
    original = original if original is not None else MimeMessage()
    return Report(bounces, _field(original, "Message-ID"), _subject(original), _field(original, REF_HEADER),
                  tuple(problems))


def _recipient_blocks(part: MimeMessage) -> list[MimeMessage]:
    """A delivery-status part's per-recipient blocks. The stdlib splits a 7-bit ``message/delivery-status``
    into blocks itself; any other (RFC 6533's, or one in base64) is decoded and split here."""
    payload = part.get_payload()
    if part.get_content_type() != "message/delivery-status" or _transfer_encoded(part) or \
            not isinstance(payload, list):
        text = _decoded_body(part).decode("utf-8", "replace")
        payload = Parser(policy=policy.default).parsestr("Content-Type: message/delivery-status\n\n" + text)
        payload = payload.get_payload()
    return [b for b in payload if isinstance(b, MimeMessage) and
            (_field(b, "Final-Recipient") or _field(b, "Original-Recipient"))]


def _original_headers(part: MimeMessage) -> MimeMessage:
    """The original's header section from the part that returns it (only its headers are read)."""
    payload = part.get_payload()
    if part.get_content_type() in MESSAGE_PARTS and not _transfer_encoded(part) and isinstance(payload, list) \
            and payload and isinstance(payload[0], MimeMessage):
        return payload[0]
    return Parser(policy=policy.default).parsestr(_decoded_body(part).decode("utf-8", "replace"), headersonly=True)


def _transfer_encoded(part: MimeMessage) -> bool:
    return _field(part, "Content-Transfer-Encoding").lower() in ("base64", "quoted-printable")


def _decoded_body(part: MimeMessage) -> bytes:
    """A part's body, its transfer encoding undone. The parser takes ``message/*`` parts apart without
    undoing any encoding, so their pieces are written out again first."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else b""
    raw = policy.compat32.clone(linesep="\r\n", cte_type="8bit")  # headers written as they came
    data = b"\r\n".join(piece.as_bytes(policy=raw) for piece in payload if isinstance(piece, MimeMessage))
    encoding = _field(part, "Content-Transfer-Encoding").lower()
    if encoding == "base64":
        return base64.b64decode(data)  # characters outside the alphabet (line breaks) are skipped
    if encoding == "quoted-printable":
        return quopri.decodestring(data)
    return data


def _bounce(block: MimeMessage) -> Bounce | None:
    if _field(block, "Action").lower() != "failed":
        return None
    final, original = _address(_field(block, "Final-Recipient")), _address(_field(block, "Original-Recipient"))
    if not (final or original):
        return None
    status = _STATUS.search(_field(block, "Status"))
    diagnostic = _field(block, "Diagnostic-Code", MAX_DIAGNOSTIC)
    return Bounce(address=final or original, status=status.group(1) if status else "", action="failed",
                  diagnostic=diagnostic, original_address=original)


def _address(value: str) -> str:
    """``rfc822; user@example.com`` (or RFC 6533's ``utf-8; j\\x{FC}rgen@...``) -> the address."""
    kind, typed, address = value.partition(";")
    if not typed:
        kind, address = "rfc822", kind
    address = address.strip().removeprefix("<").removesuffix(">").strip()
    if kind.strip().lower() == "utf-8":
        address = _UTF8_ESCAPE.sub(lambda m: _code_point(m.group(1)), address)
    return address


def _code_point(hexpoint: str) -> str:
    value = int(hexpoint, 16)
    return chr(value) if value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF else "\ufffd"


def _field(message: MimeMessage, name: str, limit: int = _MAX_FIELD) -> str:
    """A header's first value as raw text: unfolded, bytes that are not UTF-8 replaced, control characters
    dropped, whitespace runs made one space, at most ``limit`` characters. Never the stdlib's structured
    parse, which raises on some malformed values (``Message-ID: <``)."""
    wanted = name.lower()
    raw = next((value for key, value in message.raw_items() if key.lower() == wanted), "")
    if not isinstance(raw, str):
        raw = str(raw)
    text = " ".join(_CONTROL.sub("", raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace")).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _subject(message: MimeMessage) -> str:
    """The original's subject, its encoded words decoded when they can be."""
    raw = _field(message, "Subject")
    try:
        return str(policy.default.header_factory("subject", raw))
    except PARSER_ERRORS:
        return raw


def _error(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__
