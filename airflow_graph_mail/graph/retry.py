"""When and how long to wait before trying a Graph request again.

429 is retried after Graph's Retry-After (seconds or an HTTP date); 5xx and network errors after an
exponential backoff with jitter. Every operation gets a ``RetryBudget``: a bounded number of retries and
a bounded total wait, shared by all the requests the operation makes.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

log = logging.getLogger(__name__)

DEFAULT_MAX_WAIT = 300.0
DEFAULT_BACKOFF = 1.0


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Retry-After as seconds, from its number form ("7") or its HTTP-date form."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds())


def never_sent(error: requests.RequestException) -> bool:
    """True when the request cannot have reached Graph (no connection was made), so a resend is safe."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    cause, depth = error, 0
    while cause is not None and depth < 8:
        if isinstance(cause, (NewConnectionError, ConnectTimeoutError)):
            return True
        first = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None
        cause, depth = getattr(cause, "reason", None) or first or cause.__cause__, depth + 1
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
    """The retries and waiting left to one operation (a send, with its lookups and resends)."""

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
        self.policy.sleep(delay)
