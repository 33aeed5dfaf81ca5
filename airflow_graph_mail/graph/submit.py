"""Exactly once for requests that change a mailbox: the one thing no HTTP library does for us.

A POST whose answer is lost (5xx, timeout, dropped connection) may or may not have taken effect. Sending
it again blindly can mail a report twice; so after an unclear answer we wait, look for what it would
have made (a message by its idempotency key, a draft by its immutable id, an attachment by count), and
submit again only when it is not there. Every wait spends from the operation's one retry budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from airflow_graph_mail.errors import (
    GraphConnectionError,
    NoLookupError,
    OutcomeUnknownError,
    ServiceUnavailableError,
    ThrottledError,
)
from airflow_graph_mail.graph.call import Call

log = logging.getLogger(__name__)
T = TypeVar("T")


def submit_once(call: Call, submit: Callable[[], T], lookup: Callable[[], T | None] | None, *, what: str,
                no_lookup_hint: str = "") -> T:
    """``submit()``; after an unclear answer, ``lookup()`` (what the submission made, or None) decides
    whether to submit again. Without ``lookup`` an unclear answer is raised, never resubmitted."""
    while True:
        try:
            return submit()
        except OutcomeUnknownError as unclear:
            if lookup is None:
                raise OutcomeUnknownError(unclear.method, unclear.path, unclear.cause, hint=no_lookup_hint) \
                    from unclear
            delay = call.budget.delay()
            if delay is None:
                raise
            log.warning("%s %s: %s; checking in %.1fs whether %s went through", unclear.method, unclear.path,
                        unclear.cause, delay, what)
            call.budget.wait(delay)
            found = _looked_up(lookup, unclear)
        if found:
            log.info("%s had gone through despite the unclear answer; not doing it again", what)
            return found
        log.warning("%s had not gone through; doing it again", what)


def _looked_up(lookup: Callable[[], T | None], unclear: OutcomeUnknownError) -> T | None:
    """When the lookup gets no answer either, the outcome stays unknown (a retried task looks again)."""
    try:
        return lookup()
    except (GraphConnectionError, ServiceUnavailableError, ThrottledError) as err:
        raise OutcomeUnknownError(unclear.method, unclear.path, unclear.cause, hint=(
            f"looking it up failed too ({err}); a retried task looks it up again before sending")) from err
    except NoLookupError as err:  # the app may not read the mailbox: not sent again, and said why
        raise OutcomeUnknownError(unclear.method, unclear.path, unclear.cause, hint=str(err)) from err
