"""Triggers that wait, in the triggerer and not in a worker slot, for the sending mailbox to reach a state:

- ``GraphSendingRoomTrigger``: a deferred mail merge waits until the mailbox's 24-hour window has room for its
  next message (the mailbox's Sent Items and Outbox read as the merge's plan reads them, by the server's clock);
  an app that may not read them waits until the time the plan gave.
- ``GraphOutboxTrigger``: the bounce report waits until a run's mails have left the Outbox (Exchange sends them
  at 30 a minute, and reports a bounce only once a mail has left), before its settle time starts.

They serialise the connection id, the mailbox and numbers, never a token. Each look goes through GraphMailClient
(one road to Graph: typed errors, token renewal, TLS, proxies; the one client of the connection every trigger of
the triggerer shares), in the triggers' thread pool (``triggers/pool.py``), so the event loop never waits on the
network, msal or an import. Throttling, 5xx and no answer are waited out here; an error a retry cannot fix ends
the wait with an error event.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_graph_mail.errors import GraphConfigError, GraphMailError
from airflow_graph_mail.triggers.pool import backoff, poke_and_deadline, pooled, seconds, shared_client, sleep

log = logging.getLogger(__name__)


def _room(client, sender: str | None, recipients: int, not_before: float | None, position: int) -> dict | None:
    """One look (in the pool): an event's payload when the next message fits the window now, else None."""
    from airflow_graph_mail.graph.planning import iso, plan, read_usage

    usage = read_usage(client, sender)
    if usage.sent is None:  # no read permission: the plan's own time, on the server's clock
        ready = not_before is None or usage.now >= not_before
        return {"status": "room", "server_time": iso(usage.now), "position": position} if ready else None
    found = plan(usage, [recipients], client.limits)
    return {"status": "room", "server_time": iso(usage.now), "position": position} if found.fitting else None


def _left(client, sender: str | None, keys: list[str]) -> dict | None:
    """One look (in the pool): an event's payload when none of ``keys`` waits in the Outbox (or in Drafts, no
    longer a draft), else None."""
    from airflow_graph_mail.graph.outbox import waiting

    return None if waiting(client, keys, sender) else {"status": "left"}


class _MailboxPoll(BaseTrigger):
    """Look every ``poke_interval`` seconds until a look gives a payload, or the deadline (epoch) passes."""

    look: Any  # the module function a subclass looks with

    def __init__(self, *, graph_mail_conn_id: str, sender: str | None = None, poke_interval: float = 300.0,
                 deadline: float | None = None):
        super().__init__()
        self.graph_mail_conn_id = graph_mail_conn_id
        self.sender = sender
        self.poke_interval, self.deadline = poke_and_deadline(poke_interval, deadline)

    def _kwargs(self) -> dict[str, Any]:
        return {"graph_mail_conn_id": self.graph_mail_conn_id, "sender": self.sender,
                "poke_interval": self.poke_interval, "deadline": self.deadline}

    def _args(self) -> tuple:
        raise NotImplementedError

    async def run(self):
        failures, client = 0, None
        while True:
            if self.deadline is not None and time.time() >= self.deadline:
                yield TriggerEvent({"status": "timeout"})
                return
            try:
                if client is None:  # the connection read once, the client shared (triggers/pool.py)
                    client = await pooled(shared_client, self.graph_mail_conn_id)
                payload = await pooled(type(self).look, client, self.sender, *self._args())
            except GraphMailError as err:
                if err.permanent:
                    yield TriggerEvent({"status": "error", "error": f"{type(err).__name__}: {err}",
                                        "permanent": True})
                    return
                failures += 1
                delay = backoff(err, failures, self.poke_interval)
                log.warning("Looking at %s: %s; looking again in %.1fs", self.sender or "the mailbox", err, delay)
            except Exception as err:  # a bug of ours must still wake the task, with an answer
                log.exception("Looking at %s failed", self.sender or "the mailbox")
                yield TriggerEvent({"status": "error", "error": f"{type(err).__name__}: {err}", "permanent": False})
                return
            else:
                failures = 0
                if payload is not None:
                    yield TriggerEvent(payload)
                    return
                delay = self.poke_interval
            if self.deadline is not None:
                delay = min(delay, max(0.0, self.deadline - time.time()))
            await sleep(delay)


class GraphSendingRoomTrigger(_MailboxPoll):
    """Yields ``{"status": "room", "server_time": ..., "position": ...}`` once the mailbox's window has room for
    ``recipients`` (without read permission: once the server's time reaches ``not_before``), ``{"status":
    "timeout"}`` or ``{"status": "error", "error": ..., "permanent": ...}``. ``position`` (the row the merge
    goes on from) comes back in the event: ``airflow dags test`` hands a resumed task the event alone, without the
    kwargs it deferred with."""

    look = staticmethod(_room)

    def __init__(self, *, recipients: int, not_before: float | None = None, position: int = 0, **kwargs):
        super().__init__(**kwargs)
        for name, value, least in (("recipients", recipients, 1), ("position", position, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise GraphConfigError(f"{name}: {value!r}; give a whole number, {least} or more")
        self.recipients, self.position = recipients, position
        self.not_before = None if not_before is None else seconds("not_before", not_before, "a time; give epoch "
                                                                  "seconds or None")

    def _args(self) -> tuple:
        return self.recipients, self.not_before, self.position

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {**self._kwargs(), "recipients": self.recipients, "not_before": self.not_before,
                 "position": self.position})


class GraphOutboxTrigger(_MailboxPoll):
    """Yields ``{"status": "left"}`` once none of the mails tagged with ``keys`` waits in the Outbox,
    ``{"status": "timeout"}`` or an error event."""

    look = staticmethod(_left)

    def __init__(self, *, keys: list[str], **kwargs):
        super().__init__(**kwargs)
        self.keys = [str(key) for key in keys]

    def _args(self) -> tuple:
        return (self.keys,)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"{type(self).__module__}.{type(self).__qualname__}", {**self._kwargs(), "keys": self.keys}
