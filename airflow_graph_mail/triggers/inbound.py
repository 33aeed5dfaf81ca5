"""Triggers for inbound mail, run in the triggerer: the asset watcher's doorbell (``GraphMailEventTrigger``,
Airflow 3 only) and the deferred wait of ``GraphMailSensor`` (``GraphMailSensorTrigger``, every version).

Both serialise ids and filters only (never a token), and do each look at the mailbox in the triggers' thread
pool (``triggers/pool.py``: entered through asgiref, the client's one road to Graph, one client per connection
for the whole triggerer), so the event loop never waits on the network. Graph's throttling, 5xx and lost answers
are waited out here with ``asyncio.sleep``.

A watcher's ``run()`` never returns and never raises: the triggerer would start it again at once, with the
same kwargs, with no back-off, for ever (measured: 15 restarts in 30 s). It logs and backs off instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException
from airflow.providers.common.compat.triggers import BaseEventTrigger
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_graph_mail.airflow_face import DEFAULT_CONN_ID
from airflow_graph_mail.errors import GraphConfigError, GraphMailError
from airflow_graph_mail.mail.inbound import MailFilter, check_scope
from airflow_graph_mail.triggers.pool import backoff, pooled, seconds, sleep

log = logging.getLogger(__name__)

MIN_POLL = 1.0  # seconds; 30 to 60 suit most (Graph allows 10,000 requests per 10 minutes per app and mailbox)
_FILTER_KEYS = ("sender", "subject", "received_after", "has_attachments", "attachment_name", "raw_filter",
                "require_authenticated")


def _classpath(trigger) -> str:
    return f"{type(trigger).__module__}.{type(trigger).__qualname__}"


def _open_watch(conn_id: str, kwargs: dict):
    """The watch (the connection read, the shared client), in the pool: never on the event loop."""
    from airflow_graph_mail.graph.inbound import MailboxReader, offers_delta
    from airflow_graph_mail.graph.watch import MailWatch
    from airflow_graph_mail.triggers.pool import shared_client

    client = shared_client(conn_id)
    reader = MailboxReader(client, kwargs["mailbox"], kwargs["folder"], retries=False)
    mail_filter = MailFilter.of(**{k: kwargs[k] for k in _FILTER_KEYS})
    return MailWatch(reader, mail_filter, kwargs["watch_name"], lease=kwargs["lease"],
                     max_attempts=kwargs["max_attempts"], lookback=kwargs["lookback"],
                     use_delta=not kwargs["raw_filter"] and offers_delta(client))


def _filter_kwargs(**options) -> dict:
    """The filter checked now (a wrong one fails the DAG's import) and kept as the JSON it was checked from."""
    checked = MailFilter.of(**options).as_kwargs()
    return {key: checked[key] for key in _FILTER_KEYS}


class GraphMailEventTrigger(BaseEventTrigger):
    """An asset watcher's trigger (Airflow 3): one event per matching mail, at least once; the dispatcher
    (``run_once_per_mail``) turns events into exactly one DAG run per mail.

    Each poll asks Graph what arrived in the folder (change tracking; the plain listing with a
    ``raw_filter`` or in the China cloud), writes the Announced mark on each new matching mail, then yields
    ``{"message_id", "internet_message_id", "mailbox", "folder", "sender", "sender_name", "subject",
    "received", "attachments", "authentication", "watch", "attempt", "run_id", ...}``. A mail nobody claimed
    within ``lease`` seconds is announced again; after ``max_attempts`` it is dead-lettered.

    :param watch_name: names this watch: its marks on each mail, and the trigger itself (two watches of one
        folder must have different names). Letters, digits, '_', '.', '-'.
    :param mailbox: the mailbox to watch (a user's or a shared one); default: the connection's sender.
    :param folder: a folder's well-known name (``inbox``, ``archive``...) or id. Default ``inbox``.
    :param sender: which mail, as for ``GraphMailSensor``; so are ``subject``, ``received_after`` (a fixed time:
        kwargs that change at every parse would restart the watcher each time), ``has_attachments``,
        ``attachment_name``, ``raw_filter`` and ``require_authenticated``.
    :param poll_interval: seconds between polls (default 60; at least 1). One idle poll is one request.
    :param lease: seconds a mail may stay announced but unclaimed before it is announced again (default 600).
    :param max_attempts: announcements before a mail is dead-lettered (default 20).
    :param lookback: seconds of mail a (re)started watcher reads again (default one day; Graph's change
        tracking gives at most 5,000 mails for it: move finished mail out of a busy folder).
    :param graph_mail_conn_id: the Airflow connection to use.
    """

    def __init__(self, *, watch_name: str, mailbox: str | None = None, folder: str = "inbox", sender=None,
                 subject: str | None = None, received_after: str | None = None, has_attachments: bool | None = None,
                 attachment_name: str | None = None, raw_filter: str | None = None,
                 require_authenticated: bool = False, poll_interval: float = 60.0, lease: float = 600.0,
                 max_attempts: int = 20, lookback: float = 86400.0, graph_mail_conn_id: str = DEFAULT_CONN_ID):
        super().__init__()
        self.kwargs: dict[str, Any] = {
            "watch_name": check_scope("watch_name", watch_name), "mailbox": mailbox, "folder": folder,
            **_filter_kwargs(sender=sender, subject=subject, received_after=received_after,
                             has_attachments=has_attachments, attachment_name=attachment_name, raw_filter=raw_filter,
                             require_authenticated=require_authenticated),
            "poll_interval": max(seconds("poll_interval", poll_interval), MIN_POLL),
            "lease": seconds("lease", lease),
            "max_attempts": max_attempts, "lookback": seconds("lookback", lookback),
            "graph_mail_conn_id": graph_mail_conn_id}
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise GraphConfigError(f"max_attempts: expected a whole number, 1 or more, got {max_attempts!r}")
        if self.kwargs["lease"] < 1:
            raise GraphConfigError(f"lease: {lease!r} seconds is too short for a run to start; give 60 or more")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return _classpath(self), dict(self.kwargs)

    async def run(self):
        kwargs = self.kwargs
        interval = kwargs["poll_interval"]
        watch, failures = None, 0
        while True:
            delay = interval
            try:
                if watch is None:
                    watch = await pooled(_open_watch, kwargs["graph_mail_conn_id"], kwargs)
                for item in await pooled(watch.poll):
                    payload = await pooled(watch.announce, item, kwargs["graph_mail_conn_id"])
                    if payload is not None:
                        log.info("Announcing message %s of %s (attempt %d)", payload["message_id"],
                                 payload["mailbox"], payload["attempt"])
                        yield TriggerEvent(payload)
                failures = 0
            except Exception as err:  # never raise: the triggerer would restart the watch at once, for ever
                failures += 1
                delay = backoff(err, failures, interval)
                if isinstance(err, (GraphMailError, AirflowNotFoundException)):  # the latter: no such connection
                    log.warning("Watch %s: %s; polling again in %.1fs", kwargs["watch_name"], err, delay)
                else:
                    log.exception("Watch %s failed; polling again in %.1fs", kwargs["watch_name"], delay)
            await sleep(delay)


def _open_reader(conn_id: str, kwargs: dict):
    """The sensor's reader and filter (the connection read, the shared client), in the pool, once per wait."""
    from airflow_graph_mail.graph.inbound import MailboxReader
    from airflow_graph_mail.triggers.pool import shared_client

    reader = MailboxReader(shared_client(conn_id), kwargs["mailbox"], kwargs["folder"], retries=False)
    return reader, MailFilter.of(**{k: kwargs[k] for k in _FILTER_KEYS})


def _find(reader, mail_filter: MailFilter, kwargs: dict) -> list[dict]:
    """The sensor's look (read-only), in the pool."""
    from airflow_graph_mail.graph.inbound import find_mail

    return find_mail(reader, mail_filter, since=kwargs["since"], until=kwargs["until"], scope=kwargs["scope"],
                     claimer=kwargs["claimer"], limit=1)


class GraphMailSensorTrigger(BaseTrigger):
    """GraphMailSensor's wait in the triggerer: polls until some mail matches (nothing is claimed here; the
    resumed task claims), then yields ``{"status": "found"}``; or ``{"status": "timeout"}`` at the deadline,
    or ``{"status": "error", "error": ..., "permanent": ...}``."""

    def __init__(self, *, graph_mail_conn_id: str, mailbox: str | None, folder: str | None, filter: dict,
                 since: str | None, until: str | None = None, scope: str | None = None, claimer: str | None = None,
                 poke_interval: float = 60.0, deadline: float | None = None, not_before: float | None = None):
        super().__init__()
        self.kwargs: dict[str, Any] = {
            "graph_mail_conn_id": graph_mail_conn_id, "mailbox": mailbox, "folder": folder,
            "filter": {k: filter.get(k) for k in _FILTER_KEYS}, "since": since, "until": until, "scope": scope,
            "claimer": claimer, "poke_interval": seconds("poke_interval", poke_interval),
            "deadline": deadline, "not_before": not_before}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return _classpath(self), dict(self.kwargs)

    async def run(self):
        try:
            payload = await self._wait()
        except Exception as err:  # a bug of ours must still wake the task, with an answer
            log.exception("Waiting for mail failed")
            payload = {"status": "error", "error": f"{type(err).__name__}: {err}", "permanent": False}
        yield TriggerEvent(payload)

    async def _wait(self) -> dict:
        kwargs = self.kwargs
        look = {**kwargs, **kwargs["filter"]}
        interval, deadline = kwargs["poke_interval"], kwargs["deadline"]
        failures, opened = 0, None
        while True:
            delay = interval
            if kwargs["not_before"] is None or time.time() >= kwargs["not_before"]:
                try:
                    if opened is None:
                        opened = await pooled(_open_reader, kwargs["graph_mail_conn_id"], look)
                    if await pooled(_find, *opened, look):
                        return {"status": "found"}
                    failures = 0
                except GraphMailError as err:
                    if err.permanent:
                        return {"status": "error", "error": str(err), "permanent": True}
                    failures += 1
                    delay = backoff(err, failures, interval)
                    log.warning("Looking for mail: %s; looking again in %.1fs", err, delay)
            else:
                delay = min(interval, kwargs["not_before"] - time.time())
            if deadline is not None and time.time() + delay >= deadline:
                await asyncio.sleep(max(0.0, deadline - time.time()))
                return {"status": "timeout"}
            await sleep(max(delay, 0.0))
