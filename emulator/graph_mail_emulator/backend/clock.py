"""The backend's one clock: every "now" of the mail side (stored times, expiries, throttling windows, the
Outbox and the sending windows) and its timers (non-delivery reports, the Outbox's next departure) come from
here. Real time by default; ``advance(seconds)`` moves it forward, so that a test sees a day of Exchange's
sending windows in a second. Entra's tokens are not on this clock: they stay on real time, as a client's
own clock would judge them.

Timers run on one daemon thread when their time comes in real time, and at once, in the caller's thread
and in the order they are due, when ``advance`` carries the clock past them: what a moved clock makes due
has happened when ``advance`` returns.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)


class Timer:
    """An action the clock runs once at its time, unless cancelled first."""

    def __init__(self, action: Callable[[], None]):
        self.action = action
        self._state = "waiting"  # -> "done" or "cancelled"

    def cancel(self) -> None:
        if self._state == "waiting":
            self._state = "cancelled"

    def is_alive(self) -> bool:
        return self._state == "waiting"

    def fire(self) -> None:
        if self._state != "waiting":
            return
        self._state = "done"
        try:
            self.action()
        except Exception:  # a timer's failure must not stop the clock's thread or the test moving it
            log.exception("the emulator's clock: a timer failed")


class Clock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        # One runner of due timers at a time, so they run in due order; reentrant: a reset holds it while the
        # state is emptied (``paused``) and drops the timers within.
        self._running = threading.RLock()
        self._due: list[tuple[float, int, Timer]] = []  # (due on monotonic(), order, timer), a heap
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def time(self) -> float:
        """Seconds since the epoch (stored times, upload session expiry, the sending windows)."""
        return time.time() + self._offset

    def monotonic(self) -> float:
        """Seconds for measuring windows (throttling, the upload budget) and for timers."""
        return time.monotonic() + self._offset

    def iso(self) -> str:
        """Now as Graph writes it: UTC, to the second."""
        return iso(self.time())

    @property
    def offset(self) -> float:
        """Seconds this clock is ahead of real time."""
        return self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``; the timers that became due run before this returns."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise ValueError(f"advance: {seconds!r} is not a number of seconds (0 or more): the clock only moves "
                             "forward")
        with self._lock:
            self._offset += seconds
            self._wakeup.notify()
        self.run_due()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No timer runs inside this block; one running when it starts finishes first."""
        with self._running:
            yield

    def reset(self) -> None:
        """Back to real time, every timer dropped (the emulator's reset: its state goes with it)."""
        with self._running, self._lock:
            for _, _, timer in self._due:
                timer.cancel()
            self._due = []
            self._offset = 0.0

    def call_later(self, delay: float, action: Callable[[], None]) -> Timer:
        """Run ``action`` in ``delay`` seconds of this clock; the timer can be cancelled."""
        timer = Timer(action)
        with self._lock:
            heapq.heappush(self._due, (self.monotonic() + max(0.0, delay), next(self._order), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="graph-emulator-clock", daemon=True)
                self._thread.start()
            self._wakeup.notify()
        return timer

    def run_due(self) -> None:
        """Run every timer whose time has come, in due order, in this thread."""
        with self._running:
            while True:
                with self._lock:
                    if not self._due or self._due[0][0] > self.monotonic():
                        return
                    _, _, timer = heapq.heappop(self._due)
                timer.fire()

    def _loop(self) -> None:
        while True:
            with self._lock:
                wait = self._due[0][0] - self.monotonic() if self._due else None
                if wait is None or wait > 0:
                    self._wakeup.wait(wait)
                    continue
            self.run_due()


def iso(epoch: float) -> str:
    """Epoch seconds as Graph writes a time: UTC, to the second."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
