"""The review gate's trigger: wait in the triggerer, not in a worker slot, until a person sends or discards a draft.

It serialises the connection id, the mailbox, the draft's id, the interval and the deadline, never a token.
Each look is the sensor's own (``graph/review.py`` over GraphMailClient: one road to Graph, with its typed
errors, token renewal, TLS and proxies), run in this module's small thread pool so that the event loop never
waits on the network, msal or an import. The pool's threads are entered through asgiref's ``sync_to_async``:
Airflow 3.0 to 3.2.1's triggerer carries a connection read (or a token handed to the log masker) back to its
loop only from such a thread, and crashes on one from a plain thread (apache/airflow#66412, #67380); 2.x and
later 3.x take either.

The client does not sleep for these looks: throttling (Retry-After), 5xx and no answer are waited out here with
``asyncio.sleep``, and no wait or slow answer carries the trigger past its deadline. Anything else ends the wait
with an error the sensor raises.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_graph_mail.errors import GraphConfigError, GraphMailError

log = logging.getLogger(__name__)

# Threads shared by every review gate in this triggerer. A look is one GET (two on the first look), so a few
# threads serve hundreds of gates polling every minute (bench/trigger_loop.py).
POOL_SIZE = 8
MAX_BACKOFF = 300.0  # seconds between looks while Graph keeps failing without a Retry-After


class _PastDeadline(Exception):
    pass


@functools.cache
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="graph-mail-gate")


@functools.cache
def _through_asgiref(sync):
    return sync.SyncToAsync(_call, thread_sensitive=False, executor=_threads())


def _call(function, *args):
    return function(*args)


@functools.cache
def _asgiref() -> Future:
    """asgiref.sync, imported once in the pool: never on the event loop's thread."""
    return _threads().submit(importlib.import_module, "asgiref.sync")


async def _pooled(function, *args):
    """``function(*args)`` in the pool, through asgiref."""
    imported = _asgiref()
    sync = imported.result() if imported.done() else await asyncio.wrap_future(imported)
    return await _through_asgiref(sync)(function, *args)


def _open(conn_id: str, message_id, sender: str | None):
    """The gate's DraftReview (the connection read, the client built), or the error event saying what is wrong."""
    from airflow.providers.common.compat.sdk import AirflowException

    from airflow_graph_mail.graph.review import DraftReview, failure_text
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    try:
        return DraftReview(GraphMailHook(graph_mail_conn_id=conn_id).client, message_id, sender, retries=False)
    except GraphMailError as err:
        return {"status": "error", "error": failure_text(err, None), "permanent": err.permanent}
    except AirflowException as err:  # no such connection (yet)
        return {"status": "error", "error": f"{type(err).__name__}: {err}", "permanent": False}


def _seconds(name: str, value, problem: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise GraphConfigError(f"{name}: {value!r} is not {problem}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise GraphConfigError(f"{name}: {seconds!r} is not {problem}")
    return seconds


class GraphDraftSentTrigger(BaseTrigger):
    """Yields one event: ``{"status": "sent", "message": {...}}``, ``{"status": "discarded", "how": ...}``,
    ``{"status": "timeout"}`` or ``{"status": "error", "error": ..., "permanent": ...}``."""

    def __init__(self, *, graph_mail_conn_id: str, message_id: str, sender: str | None = None,
                 poke_interval: float = 60.0, deadline: float | None = None):
        super().__init__()
        self.graph_mail_conn_id = graph_mail_conn_id
        self.message_id = message_id
        self.sender = sender
        self.poke_interval = _seconds("poke_interval", poke_interval, "a number of seconds; give a finite number, "
                                                                      "0 or more")
        # epoch seconds, or None to wait as long as the task may
        self.deadline = None if deadline is None else _seconds("deadline", deadline, "a time; give epoch seconds "
                                                                                     "or None")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"graph_mail_conn_id": self.graph_mail_conn_id, "message_id": self.message_id,
                 "sender": self.sender, "poke_interval": self.poke_interval, "deadline": self.deadline})

    async def run(self):
        try:
            payload = await self._wait()
        except _PastDeadline:
            payload = {"status": "timeout"}
        except Exception as err:  # a bug of ours must still wake the task, with an answer
            log.exception("Waiting for draft %s failed", self.message_id)
            payload = {"status": "error", "error": f"{type(err).__name__}: {err}", "permanent": False}
        yield TriggerEvent(payload)

    async def _wait(self) -> dict:
        """The event's payload, once decided; _PastDeadline when the deadline comes first."""
        review = await self._in_thread(_open, self.graph_mail_conn_id, self.message_id, self.sender)
        if isinstance(review, dict):  # a broken or missing connection, a bad id or mailbox, named
            return review
        from airflow_graph_mail.graph.review import GONE, confirm_delay  # loaded by _open, in the pool
        from airflow_graph_mail.mail.review import DISCARDED, SENT, sent_summary

        failures = 0
        while True:
            try:
                look = await self._in_thread(review.look)
            except GraphMailError as err:
                if err.permanent:
                    return {"status": "error", "error": review.failure(err), "permanent": True}
                failures += 1
                delay = self._backoff(err, failures)
                log.warning("Looking at draft %s: %s; looking again in %.1fs", self.message_id, err, delay)
            else:
                failures = 0
                if look.state == SENT:
                    return {"status": "sent", "message": sent_summary(look.message or {})}
                if look.state == DISCARDED:
                    how = "deleted" if look.message is None else "moved to Deleted Items"
                    return {"status": "discarded", "how": how}
                delay = confirm_delay(self.poke_interval) if look.state == GONE else self.poke_interval
            await self._sleep(delay)

    def _remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.time()

    async def _in_thread(self, function, *args):
        """``function(*args)`` in the pool, awaited until the deadline at most (a later answer is dropped)."""
        work = asyncio.ensure_future(_pooled(function, *args))
        work.add_done_callback(_retrieved)
        remaining = self._remaining()
        done, _ = await asyncio.wait((work,), timeout=None if remaining is None else max(0.0, remaining))
        if not done:
            raise _PastDeadline
        return work.result()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or until the deadline and raise _PastDeadline when it comes first."""
        remaining = self._remaining()
        if remaining is not None and seconds >= remaining:
            await asyncio.sleep(max(0.0, remaining))
            raise _PastDeadline
        await asyncio.sleep(seconds)

    def _backoff(self, err: GraphMailError, failures: int) -> float:
        """Graph's Retry-After (read into 0-600 s), at least a second; without one, the poke interval doubled
        after each failure in a row."""
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            return max(retry_after, 1.0)
        return min(max(self.poke_interval, 1.0) * 2 ** min(failures - 1, 10), max(MAX_BACKOFF, self.poke_interval))


def _retrieved(work: asyncio.Future) -> None:
    """A look whose answer came after the deadline (or after a cancel) must not log "never retrieved"."""
    if not work.cancelled():
        work.exception()
