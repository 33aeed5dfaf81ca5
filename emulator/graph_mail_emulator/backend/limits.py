"""The tenant's limits: Exchange Online's by default, lowered, raised or turned off by tests and the command
line; and the fixed sizes Graph documents.

Exchange Online's transport limits (Microsoft: "Exchange Online limits", "Troubleshoot outbound sending limits
in Exchange Online", the Exchange Team's "Introducing Exchange Online Tenant Outbound Email Limits") apply to
mail submitted through Graph as to any client. Each is on by default at Exchange Online's value, can be turned
off alone (0), and ``exchange_limits=False`` turns all of them off at once for raw speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MB = 1024 * 1024
# Graph refuses request bodies over 4 MB (base64 included): the one definition the emulator uses.
MAX_REQUEST_BYTES = 4 * MB
MAX_CHUNK_BYTES = 4 * MB  # one byte range of an upload session
UPLOAD_SESSION_MIN_BYTES = 3_000_000  # "3 MB" in Microsoft's docs
MAX_ATTACHMENT_BYTES = 150 * MB
# A mail from outside given to the inspection API (an .eml, or JSON with base64 attachments): a 150 MB
# message and its encoding.
INBOUND_REQUEST_BYTES = 210 * MB
MOST_RECIPIENTS_PER_MESSAGE = 1000  # the most an admin can set (Set-Mailbox -RecipientLimits)
TRIAL_EXTERNAL_LIMIT = 5000  # TERRL of a trial tenant, documented
DAY = 24 * 3600.0
# What happens to a message over the recipients-per-message limit. Documented for Exchange Online: the
# message is accepted, then bounces with 550 5.5.3 (RESOLVER.ADR.RecipLimit) to the sender. Whether Graph
# answers 400 first instead is not documented anywhere (unknown); "400" keeps that older answer of ours.
RECIPIENT_LIMIT_ANSWERS = ("ndr", "400")
# Where accepted mail waits for its slot. Graph's own account of sendMail names Drafts; Outlook on the web
# leaves throttled mail in the Outbox. Which one Graph-submitted mail sits in is unknown; Outbox by default.
QUEUE_FOLDERS = ("outbox", "drafts")
# The NDR of the recipient rate limit: 5.1.90 as Microsoft's NDR table words it; 5.2.2 with "submission quota
# exceeded" is the variant also seen.
RECIPIENT_RATE_STATUSES = ("5.1.90", "5.2.2")


def external_recipient_limit(licenses: int) -> int:
    """TERRL as Microsoft documents it: 500 * (purchased email licences ^ 0.7) + 9500 external recipients per
    24 hours (1 licence: 10,000; 100: 22,059; 1,000: 72,446)."""
    return round(500 * licenses ** 0.7 + 9500)


@dataclass(frozen=True)
class Limits:
    message_size_limit: int = 35 * MB  # the tenant's message size limit
    upload_budget_bytes: int = 150 * MB  # uploaded per mailbox per window before 429
    upload_budget_window: float = 300.0
    upload_session_lifetime: float = 900.0
    mailbox_concurrency: int = 4  # concurrent requests per mailbox before 429
    mailbox_requests: int = 10_000  # requests per mailbox per window before 429
    mailbox_window: float = 600.0
    latency: float = 0.0  # seconds added to every mailbox request
    sendmail_status: int = 202  # 202 today; older docs say 204
    # -- Exchange Online's transport, behind Graph's 202 --------------------------------------------------
    exchange_limits: bool = True  # False: every limit below off (mail leaves at once, no window, no cap)
    message_rate: int = 30  # messages a mailbox sends per minute; the rest wait in the Outbox (0: no limit)
    recipient_rate: int = 10_000  # recipients per mailbox per 24-hour sliding window; beyond: an NDR (0: none)
    recipient_rate_status: str = "5.1.90"  # the code of that NDR (RECIPIENT_RATE_STATUSES)
    recipient_limit: int = 500  # recipients per message, 1 to 1000 as an admin sets it (0: no limit)
    recipient_limit_answer: str = "ndr"  # RECIPIENT_LIMIT_ANSWERS
    licenses: int = 100  # purchased email licences, for TERRL's formula (a mid-size tenant; 1 gives 10,000)
    trial_tenant: bool = False  # a trial tenant: TERRL is 5,000 and its NDR 5.7.232
    external_limit: int | None = None  # TERRL, external recipients per tenant per 24 h (None: from the above; 0: off)
    queue_folder: str = "outbox"  # QUEUE_FOLDERS

    def __post_init__(self) -> None:
        for name in ("message_rate", "recipient_rate", "recipient_limit", "licenses"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: {value!r}; give a whole number, 0 or more{_OFF.get(name, '')}")
        if self.recipient_limit > MOST_RECIPIENTS_PER_MESSAGE:
            raise ValueError(f"recipient_limit: {self.recipient_limit}; Exchange Online takes 1 to "
                             f"{MOST_RECIPIENTS_PER_MESSAGE} recipients per message (0 turns the limit off)")
        if self.licenses < 1:
            raise ValueError("licenses: 0; a tenant has at least 1 licence (TERRL is computed from it)")
        if self.external_limit is not None and (isinstance(self.external_limit, bool) or not isinstance(
                self.external_limit, int) or self.external_limit < 0):
            raise ValueError(f"external_limit: {self.external_limit!r}; give a whole number of external recipients "
                             "per 24 hours, 0 to turn TERRL off, or None for the documented formula")
        for name, allowed in (("recipient_limit_answer", RECIPIENT_LIMIT_ANSWERS), ("queue_folder", QUEUE_FOLDERS),
                              ("recipient_rate_status", RECIPIENT_RATE_STATUSES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: {getattr(self, name)!r}; use one of {', '.join(allowed)}")
        for name in ("exchange_limits", "trial_tenant"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: {getattr(self, name)!r}; give True or False")
        if not (isinstance(self.latency, (int, float)) and math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f"latency: {self.latency!r}; give seconds, 0 or more")

    # What is in force: a limit turned off alone, or all of them with exchange_limits=False, is 0.

    @property
    def messages_per_minute(self) -> int:
        return self.message_rate if self.exchange_limits else 0

    @property
    def daily_recipients(self) -> int:
        return self.recipient_rate if self.exchange_limits else 0

    @property
    def recipients_per_message(self) -> int:
        return self.recipient_limit if self.exchange_limits else 0

    @property
    def daily_external_recipients(self) -> int:
        """TERRL in force: as set, else 5,000 for a trial tenant, else from the licences."""
        if not self.exchange_limits:
            return 0
        if self.external_limit is not None:
            return self.external_limit
        return TRIAL_EXTERNAL_LIMIT if self.trial_tenant else external_recipient_limit(self.licenses)


_OFF = {"message_rate": " (0: no limit)", "recipient_rate": " (0: no window)", "recipient_limit": " (0: no limit)"}


def message_size(message: dict, attached_bytes: int) -> int:
    """What the tenant's size limit counts: subject, body and attachments, before any encoding."""
    body = (message.get("body") or {}).get("content", "")
    return len(message.get("subject", "").encode()) + len(body.encode()) + attached_bytes
