"""Per-mailbox throttling as Exchange applies it to Graph: concurrent requests, requests per window, and
bytes uploaded per window.

Microsoft's limits are 4 concurrent requests and 10,000 requests per 10 minutes per app and mailbox, and
150 MB uploaded per 5 minutes; each answers 429 with Retry-After. Tests scale them down.
"""

from __future__ import annotations

import collections
import math
import threading
from contextlib import contextmanager

from graph_mail_emulator.backend.clock import Clock
from graph_mail_emulator.backend.limits import MB
from graph_mail_emulator.errors import GraphError


class MailboxThrottle:
    def __init__(self, clock: Clock, concurrency: int = 4, requests_per_window: int = 10_000,
                 window_seconds: float = 600.0, concurrency_retry_after: int = 1):
        self.clock = clock
        self.concurrency = concurrency
        self.requests_per_window = requests_per_window
        self.window = window_seconds
        self.concurrency_retry_after = concurrency_retry_after
        self._in_flight: dict[str, int] = collections.Counter()
        self._recent: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self.throttled = 0

    @contextmanager
    def slot(self, mailbox: str):
        """Hold one of the mailbox's concurrent slots for a request, or raise 429."""
        key = mailbox.lower()
        with self._lock:
            now = self.clock.monotonic()
            recent = self._recent[key]
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if len(recent) >= self.requests_per_window:
                self.throttled += 1
                wait = max(1, math.ceil(recent[0] + self.window - now))
                raise GraphError(429, "ApplicationThrottled", "Application is over its MailboxRequests limit.",
                                 {"Retry-After": str(wait)})
            if self._in_flight[key] >= self.concurrency:
                self.throttled += 1
                raise GraphError(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.",
                                 {"Retry-After": str(self.concurrency_retry_after)})
            self._in_flight[key] += 1
            recent.append(now)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[key] -= 1


class UploadBudget:
    """Bytes uploaded per mailbox in a sliding window (Exchange: 150 MB per 5 minutes) -> 429 beyond it."""

    def __init__(self, clock: Clock, limit_bytes: int, window_seconds: float):
        self.clock = clock
        self.limit_bytes, self.window = limit_bytes, window_seconds
        self._used: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()

    def spend(self, mailbox_id: str, size: int) -> None:
        with self._lock:
            now = self.clock.monotonic()
            used = self._used[mailbox_id]
            while used and used[0][0] <= now - self.window:
                used.popleft()
            total = sum(n for _, n in used)
            if used and total + size > self.limit_bytes:
                free_at, freed = None, 0  # when enough of the window has passed for this chunk to fit
                for stamp, n in used:
                    freed += n
                    if total - freed + size <= self.limit_bytes:
                        free_at = stamp + self.window
                        break
                wait = max(1, math.ceil((free_at or now + self.window) - now))
                raise GraphError(429, "ApplicationThrottled", "Application is over its upload limit for this "
                                 f"mailbox ({self.limit_bytes // MB} MB per {self.window:g} seconds).",
                                 {"Retry-After": str(wait)})
            used.append((now, size))
