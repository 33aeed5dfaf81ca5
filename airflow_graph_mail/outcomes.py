"""What happened to a mail: one vocabulary for the client, the hook, the operators and XCom.

No Airflow and no HTTP here, like ``errors``: every layer may use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class Status(str, Enum):
    """A send's outcome. A ``str``, so that it compares, serialises and prints as its value."""

    SENT = "sent"  # went out now
    ALREADY_SENT = "already_sent"  # an earlier attempt had sent it (found by its idempotency key)
    FAILED = "failed"  # not sent; ``error`` says why
    UNKNOWN = "unknown"  # the answer was lost and the lookup failed too: it may have gone
    DEFERRED = "deferred"  # not sent yet: it goes when the mailbox's 24-hour window has room (``leaves_at``)
    NOT_RESENT = "not_resent"  # a retry that could not look (no read permission) kept it back: at most once

    def __str__(self) -> str:
        return self.value


@dataclass
class Outcome:
    """One message of a batch: ``permanent`` says that a retry cannot fix its failure. ``cc``, ``bcc`` and
    ``ref`` (the bounce ref the mail carries) let a bounce report believe a report only about this mail's
    own recipients. ``accepted_at`` is when Graph accepted it (the server's time), ``leaves_at`` when it leaves, or
    left, the Outbox at the mailbox's message rate (an estimate), or for a deferred mail when it is planned to."""

    position: int
    key: str | None
    to: list[str]
    subject: str
    status: Status
    error: str = ""
    permanent: bool = False
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    ref: str = ""
    accepted_at: str = ""
    leaves_at: str = ""

    def as_dict(self) -> dict:
        """Plain JSON types only (XCom stores it)."""
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_dict(cls, value: dict) -> Outcome:
        """An outcome as XCom gave it back (an older release may have pushed fewer fields)."""
        return cls(position=value.get("position", 0), key=value.get("key"), to=list(value.get("to") or []),
                   subject=str(value.get("subject") or ""), status=Status(value["status"]),
                   error=str(value.get("error") or ""), permanent=bool(value.get("permanent", False)),
                   cc=list(value.get("cc") or []), bcc=list(value.get("bcc") or []), ref=str(value.get("ref") or ""),
                   accepted_at=str(value.get("accepted_at") or ""), leaves_at=str(value.get("leaves_at") or ""))
