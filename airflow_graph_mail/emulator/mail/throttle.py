"""Per-mailbox throttling as Exchange applies it to Graph: concurrent requests and requests per window.

Microsoft's limits are 4 concurrent requests and 10,000 requests per 10 minutes per app and mailbox;
both answer 429 with Retry-After. Tests scale them down.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from contextlib import contextmanager

from airflow_graph_mail.emulator.wire import GraphError


class MailboxThrottle:
    def __init__(self, concurrency: int = 4, requests_per_window: int = 10_000, window_seconds: float = 600.0,
                 concurrency_retry_after: int = 1):
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
            now = time.monotonic()
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
