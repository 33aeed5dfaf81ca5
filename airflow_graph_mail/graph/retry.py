"""When and how long to wait before trying a Graph request again: one policy for every request the client
makes (reads, submissions, upload chunks).

429 is retried after Graph's Retry-After (seconds or an HTTP date, read by urllib3); 5xx and network
errors after an exponential backoff with jitter. Each operation gets a ``RetryBudget``: a bounded number
of retries and a bounded total wait, shared by all the requests it makes.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field

import requests
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader, NewConnectionError
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

DEFAULT_MAX_WAIT = 300.0
DEFAULT_BACKOFF = 1.0
# The longest Retry-After believed: Graph's throttling windows are 10 minutes at most. A longer (or infinite)
# one is read as this, so that no answer can put a caller to sleep for days or end a wait at once.
MAX_RETRY_AFTER = 600.0
_RETRY_AFTER = Retry(0)  # urllib3's Retry-After parser (numbers and HTTP dates)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds from now, within 0 (a date in the past) to MAX_RETRY_AFTER; None when absent or
    unreadable (``nan`` included), which means: back off as without one.

    Seconds may have a fraction (a test service's); the HTTP-date form is urllib3's to read."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = float(_RETRY_AFTER.parse_retry_after(value.strip()))
        except (InvalidHeader, ValueError, TypeError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def never_sent(error: requests.RequestException) -> bool:
    """True when the request cannot have reached Graph (no connection was made), so a resend is safe."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    cause: BaseException | None = error
    for _ in range(8):
        if cause is None:
            break
        if isinstance(cause, (NewConnectionError, ConnectTimeoutError)):
            return True
        first = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None
        cause = getattr(cause, "reason", None) or first or cause.__cause__
    return False


@dataclass
class RetryPolicy:
    """``max_wait``: seconds of waiting allowed per operation; ``backoff``: the first backoff, doubled each time."""

    max_wait: float = DEFAULT_MAX_WAIT
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = 60.0
    max_retries: int = 10
    sleep: object = field(default=time.sleep, repr=False)

    def budget(self) -> RetryBudget:
        return RetryBudget(self)


class RetryBudget:
    """The retries and waiting left to one operation (a send, with its lookups, resends and uploads)."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.retries = 0
        self.waited = 0.0

    def delay(self, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next try, or None when the budget is spent."""
        if self.retries >= self.policy.max_retries:
            return None
        if retry_after is not None:
            delay = retry_after
        else:
            delay = min(self.policy.max_backoff, self.policy.backoff * 2 ** self.retries) * random.uniform(0.5, 1.0)
        if self.waited + delay > self.policy.max_wait:
            return None
        return delay

    def wait(self, delay: float) -> None:
        self.retries += 1
        self.waited += delay
        self.policy.sleep(delay)  # type: ignore[operator]
