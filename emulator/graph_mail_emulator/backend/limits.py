"""The tenant's limits: Exchange Online's by default, lowered or raised by tests and the command line; and
the fixed sizes Graph documents."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024
# Graph refuses request bodies over 4 MB (base64 included): the one definition the emulator uses.
MAX_REQUEST_BYTES = 4 * MB
MAX_CHUNK_BYTES = 4 * MB  # one byte range of an upload session
UPLOAD_SESSION_MIN_BYTES = 3_000_000  # "3 MB" in Microsoft's docs
MAX_ATTACHMENT_BYTES = 150 * MB


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


def message_size(message: dict, attached_bytes: int) -> int:
    """What the tenant's size limit counts: subject, body and attachments, before any encoding."""
    body = (message.get("body") or {}).get("content", "")
    return len(message.get("subject", "").encode()) + len(body.encode()) + attached_bytes
