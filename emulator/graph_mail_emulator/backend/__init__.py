"""The backend: the mail side's state and rules, in one typed object, knowing nothing of HTTP.

The HTTP faces (``faces/``) reach everything through one ``backend`` attribute: the store (persistence),
delivery (the one road a submitted message takes), the bounce rules, upload sessions, the tenant's limits
and the throttles they set, and the clock every "now" comes from (``clock.advance(seconds)`` moves it, and with
it the Outbox, the sending windows and the reports on their way).
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from graph_mail_emulator.backend.bounces import Bounces
from graph_mail_emulator.backend.changes import ChangeLog
from graph_mail_emulator.backend.clock import Clock
from graph_mail_emulator.backend.delivery import Delivery
from graph_mail_emulator.backend.inbound import Inbound
from graph_mail_emulator.backend.limits import Limits
from graph_mail_emulator.backend.store import MailStore
from graph_mail_emulator.backend.throttle import MailboxThrottle, UploadBudget
from graph_mail_emulator.backend.uploads import UploadSessions

__all__ = ["Limits", "MailBackend"]


class MailBackend:
    def __init__(self, db_path: str, uploads_dir: Path, limits: Limits, bounces: Bounces, tenant_domain: str,
                 clock: Clock | None = None):
        self.clock = clock or Clock()
        self.store = MailStore(db_path, clock=self.clock)
        self.bounces = bounces
        self.delivery = Delivery(self.store, bounces, self.clock, tenant_domain, limits)
        self.uploads = UploadSessions(uploads_dir, self.clock)
        self.changes = ChangeLog(self.store)
        self.inbound = Inbound(self.store, self.clock, self.changes, lambda: self.limits, tenant_domain)
        self.initial_limits = limits
        self.set_limits()

    def set_limits(self, **changes) -> None:
        """Change limits for a while (``reset()`` restores the ones given at start): the fields of ``Limits``,
        e.g. ``set_limits(exchange_limits=False)`` for raw speed, ``set_limits(recipient_rate=100)``."""
        unknown = set(changes) - {f.name for f in fields(Limits)}
        if unknown:
            raise TypeError(f"unknown limit(s): {', '.join(sorted(unknown))}")
        self.limits = replace(self.initial_limits, **changes)
        self.delivery.limits = self.limits
        self.upload_budget = UploadBudget(self.clock, self.limits.upload_budget_bytes, self.limits.upload_budget_window)
        self.throttle = MailboxThrottle(self.clock, self.limits.mailbox_concurrency, self.limits.mailbox_requests,
                                        self.limits.mailbox_window)

    def clear_mailboxes(self) -> None:
        """Every message gone (the Outbox's queue and reports on their way too), the bounce rules back to those
        given at start. A timer running now (a report, a departure) finishes first: what it writes goes too."""
        with self.clock.paused():
            self.delivery.forget()
            self.bounces.reset()
            self.store.clear()
            self.changes.expire(forget=True)  # delta links into the emptied mailboxes are no longer known

    def reset(self) -> None:
        """Empty mailboxes, the Outbox's queue and uploads; limits and bounce rules back to those given at start;
        the clock back to real time. No timer runs meanwhile."""
        with self.clock.paused():
            self.clear_mailboxes()
            self.uploads.clear()
            self.set_limits()
            self.delivery.sends = 0
            self.clock.reset()
