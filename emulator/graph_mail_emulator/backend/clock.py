"""The backend's one clock: every "now" of the mail side (stored times, expiries, throttling windows) and
its timers (non-delivery reports) come from here. Real time; one object, so that tests can move it."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable


class Clock:
    def time(self) -> float:
        """Seconds since the epoch (stored times, upload session expiry)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds for measuring windows (throttling, the upload budget)."""
        return time.monotonic()

    def iso(self) -> str:
        """Now as Graph writes it: UTC, to the second."""
        return dt.datetime.fromtimestamp(self.time(), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    def call_later(self, delay: float, action: Callable[[], None]) -> threading.Timer:
        """Run ``action`` in ``delay`` seconds, in a daemon thread; the timer can be cancelled."""
        timer = threading.Timer(delay, action)
        timer.daemon = True
        timer.start()
        return timer
