"""Keep one client's requests to a mailbox within Graph's limits, shared by every thread using the client.

Exchange allows 4 concurrent requests per app and mailbox. The pacer holds a slot per request; a 429
halves the slots and pauses every thread until Retry-After has passed; successes give slots back one
at a time. Other tasks and workers are bounded with an Airflow pool, not here.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from airflow_graph_mail.errors import GraphConfigError

DEFAULT_CONCURRENCY = 4


class MailboxPacer:
    def __init__(self, concurrency: int = DEFAULT_CONCURRENCY):
        if concurrency < 1:
            raise GraphConfigError("concurrency: must be at least 1")
        self.concurrency = concurrency
        self.allowed = concurrency
        self.in_flight = 0
        self.resume_at = 0.0
        self._successes = 0
        self._ready = threading.Condition()

    @contextmanager
    def slot(self):
        with self._ready:
            while True:
                pause = self.resume_at - time.monotonic()
                if pause <= 0 and self.in_flight < self.allowed:
                    break
                self._ready.wait(timeout=pause if pause > 0 else None)
            self.in_flight += 1
        try:
            yield
        finally:
            with self._ready:
                self.in_flight -= 1
                self._ready.notify_all()

    def throttled(self, retry_after: float) -> None:
        """Graph said 429: fewer requests at once, and none before Retry-After has passed."""
        with self._ready:
            self.allowed = max(1, self.allowed // 2)
            self._successes = 0
            self.resume_at = max(self.resume_at, time.monotonic() + retry_after)

    def succeeded(self) -> None:
        with self._ready:
            if self.allowed >= self.concurrency:
                return
            self._successes += 1
            if self._successes >= 4 * self.allowed:  # a slot back after a few clean rounds
                self.allowed += 1
                self._successes = 0
                self._ready.notify_all()
