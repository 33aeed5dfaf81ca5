"""The review gate's trigger: wait in the triggerer, not in a worker slot, until a person sends or discards a draft.

It serialises the connection id, the mailbox, the draft's id, the interval and the deadline, never a token.
Each look is the sensor's own (``graph/review.py`` over GraphMailClient: one road to Graph, with its typed
errors, token renewal, TLS and proxies), run in the triggers' thread pool (``triggers/pool.py``, entered through
asgiref) so that the event loop never waits on the network, msal or an import, over the client every trigger of
the connection shares. Between looks a gate waits for the watch of its mailbox's Drafts (``triggers/drafts.py``:
one change-tracking poll for all the gates) to see its draft leave, rather than looking every poke.

The client does not sleep for these looks: throttling (Retry-After), 5xx and no answer are waited out here with
``asyncio.sleep``, and no wait or slow answer carries the trigger past its deadline. Anything else ends the wait
with an error the sensor raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_graph_mail.errors import GraphMailError
from airflow_graph_mail.triggers.drafts import LEFT, UNLISTED, join
from airflow_graph_mail.triggers.pool import backoff, poke_and_deadline, pooled, sleep

log = logging.getLogger(__name__)


def _open(conn_id: str, message_id, sender: str | None):
    """The gate's DraftReview (the connection read, the shared client) and whether Drafts can be watched for it,
    or the error event saying what is wrong."""
    from airflow.providers.common.compat.sdk import AirflowException

    from airflow_graph_mail.graph.inbound import offers_delta
    from airflow_graph_mail.graph.review import DraftReview, failure_text
    from airflow_graph_mail.triggers.pool import shared_client

    try:
        client = shared_client(conn_id)
        return DraftReview(client, message_id, sender, retries=False), offers_delta(client)
    except GraphMailError as err:
        return {"status": "error", "error": failure_text(err, None), "permanent": err.permanent}
    except AirflowException as err:  # no such connection (yet)
        return {"status": "error", "error": f"{type(err).__name__}: {err}", "permanent": False}


class GraphDraftSentTrigger(BaseTrigger):
    """Yields one event: ``{"status": "sent", "message": {...}}``, ``{"status": "discarded", "how": ...}``,
    ``{"status": "timeout"}`` or ``{"status": "error", "error": ..., "permanent": ...}``."""

    def __init__(self, *, graph_mail_conn_id: str, message_id: str, sender: str | None = None,
                 poke_interval: float = 60.0, deadline: float | None = None):
        super().__init__()
        self.graph_mail_conn_id = graph_mail_conn_id
        self.message_id = message_id
        self.sender = sender
        self.poke_interval, self.deadline = poke_and_deadline(poke_interval, deadline)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"graph_mail_conn_id": self.graph_mail_conn_id, "message_id": self.message_id,
                 "sender": self.sender, "poke_interval": self.poke_interval, "deadline": self.deadline})

    async def run(self):
        try:
            payload = await self._until_deadline()
        except Exception as err:  # a bug of ours must still wake the task, with an answer
            log.exception("Waiting for draft %s failed", self.message_id)
            payload = {"status": "error", "error": f"{type(err).__name__}: {err}", "permanent": False}
        yield TriggerEvent(payload)

    async def _until_deadline(self) -> dict:
        """The wait's payload, or a timeout when the deadline comes first, whether the gate sleeps or a look is
        under way (its answer, when it comes, is dropped). One timer for the whole wait, not one per look."""
        work = asyncio.ensure_future(self._wait())
        work.add_done_callback(_retrieved)
        try:
            remaining = None if self.deadline is None else max(0.0, self.deadline - time.time())
            done, _ = await asyncio.wait((work,), timeout=remaining)
            if done:
                return work.result()
            return {"status": "timeout"}
        finally:
            work.cancel()  # past the deadline, or this trigger cancelled: the look's thread finishes on its own

    async def _wait(self) -> dict:
        """The event's payload, once decided."""
        opened = await pooled(_open, self.graph_mail_conn_id, self.message_id, self.sender)
        if isinstance(opened, dict):  # a broken or missing connection, a bad id or mailbox, named
            return opened
        review, watched = opened
        # Joined before the first look: a draft that leaves Drafts after any look wakes this gate.
        waiter = join(review.client, review.mailbox, self.message_id, self.poke_interval) if watched else None
        try:
            return await self._looks(review, waiter)
        finally:
            if waiter is not None:
                waiter.close()

    async def _looks(self, review, waiter) -> dict:
        """Look, then wait for the watch of Drafts to see the draft leave (or look again each poke without it)."""
        from airflow_graph_mail.graph.review import GONE, confirm_delay  # loaded by _open, in the pool
        from airflow_graph_mail.mail.review import DISCARDED, SENT, sent_summary

        failures, why = 0, None
        while True:
            # Why it was woken, kept until a look finds the draft (a failed look, or one that found nothing, tells
            # nothing about it); a wake-up from here on is a new one.
            why = (waiter.take() if waiter is not None else None) or why
            try:
                async with waiter.watch.turns if waiter is not None else contextlib.nullcontext():
                    look = await pooled(review.look)
            except GraphMailError as err:
                if err.permanent:
                    return {"status": "error", "error": review.failure(err), "permanent": True}
                failures += 1
                delay = backoff(err, failures, self.poke_interval)
                log.warning("Looking at draft %s: %s; looking again in %.1fs", self.message_id, err, delay)
            else:
                failures = 0
                if look.state == SENT:
                    return {"status": "sent", "message": sent_summary(look.message or {})}
                if look.state == DISCARDED:
                    how = "deleted" if look.message is None else "moved to Deleted Items"
                    return {"status": "discarded", "how": how}
                found = look.state != GONE
                tracked = found and waiter is not None and waiter.tracks(look.message)
                delay = self.poke_interval if found else confirm_delay(self.poke_interval)
                # Not kept through the wait: an answer that outlives two young collections reaches the oldest
                # generation, and enough of those (hundreds of gates' answers) set off a full collection.
                del look
                if tracked and why in (LEFT, UNLISTED):  # seen gone, yet in Drafts: an id the watch cannot follow
                    waiter.close()  # for good (closing again when the gate ends does nothing)
                    waiter, tracked = None, False
                if found:
                    why = None  # the wake-up is answered
                if tracked:
                    await waiter.wait()
                    continue
            await sleep(delay)


def _retrieved(work: asyncio.Future) -> None:
    """A wait that failed after the deadline (or after a cancel) must not log "never retrieved"."""
    if not work.cancelled():
        work.exception()
