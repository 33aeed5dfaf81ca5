"""The mail side's state and rules in one typed object: the store, upload sessions, and the tenant's limits.

The HTTP face (``messages.py``, ``attachments.py``, the inspection API, the viewer) reaches everything
through one ``backend`` attribute; the backend knows nothing of HTTP.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path

from airflow_graph_mail.emulator.mail.store import MailStore
from airflow_graph_mail.emulator.mail.throttle import MailboxThrottle
from airflow_graph_mail.emulator.mail.uploads import MB, UploadBudget, UploadSessions

# Graph refuses request bodies over 4 MB (base64 included): the one definition the emulator uses.
MAX_REQUEST_BYTES = 4 * MB


@dataclass(frozen=True)
class Limits:
    """Exchange Online's limits by default; tests and the command line lower or raise them."""

    message_size_limit: int = 35 * MB  # the tenant's message size limit
    upload_budget_bytes: int = 150 * MB  # uploaded per mailbox per window before 429
    upload_budget_window: float = 300.0
    upload_session_lifetime: float = 900.0
    mailbox_concurrency: int = 4  # concurrent requests per mailbox before 429
    mailbox_requests: int = 10_000  # requests per mailbox per window before 429
    mailbox_window: float = 600.0
    latency: float = 0.0  # seconds added to every mailbox request
    sendmail_status: int = 202  # 202 today; older docs say 204


class MailBackend:
    def __init__(self, store: MailStore, uploads_dir: Path, limits: Limits):
        self.store = store
        self.uploads = UploadSessions(uploads_dir)
        self.initial_limits = limits
        self.set_limits()
        self.sends = 0
        self._sends_lock = threading.Lock()

    def set_limits(self, **changes) -> None:
        """Change limits for a while (``reset()`` restores the ones given at start)."""
        unknown = set(changes) - {f.name for f in fields(Limits)}
        if unknown:
            raise TypeError(f"unknown limit(s): {', '.join(sorted(unknown))}")
        self.limits = replace(self.initial_limits, **changes)
        self.upload_budget = UploadBudget(self.limits.upload_budget_bytes, self.limits.upload_budget_window)
        self.throttle = MailboxThrottle(self.limits.mailbox_concurrency, self.limits.mailbox_requests,
                                        self.limits.mailbox_window)

    def count_send(self) -> None:
        with self._sends_lock:
            self.sends += 1

    def reset(self) -> None:
        """Empty mailboxes and uploads; limits back to those given at start."""
        self.store.clear()
        self.uploads.clear()
        self.set_limits()
        self.sends = 0
