"""The review gate's trigger: wait in the triggerer, not in a worker slot, until a person sends or discards a draft.

It serialises the connection id, the mailbox, the draft's id, the interval and the deadline, never a token.
Everything blocking (reading the connection, msal's token requests, importing httpx and the hook, building
the client) runs in a thread; the polls are async HTTP (httpx) with the connection's TLS and proxy
settings. Throttling, 5xx and network errors only delay
the next look; anything else ends the wait with an error the sensor raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from airflow.triggers.base import BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)


async def in_thread(function, *args):
    """Blocking work off the event loop (asgiref's way where Airflow has it, so that reading a connection
    inside the triggerer goes through Airflow's own channel)."""
    try:
        from asgiref.sync import sync_to_async
    except ImportError:  # pragma: no cover - Airflow depends on asgiref
        return await asyncio.to_thread(function, *args)
    return await sync_to_async(function)(*args)


@dataclass
class _Graph:
    """What the polls need, made in a thread: the connection read, the token source, the HTTP client, and
    the modules they use (importing httpx or our code on the event loop would block it for a while)."""

    base_url: str
    user_path: str
    credential: Any
    http: Any  # httpx.AsyncClient
    network_error: type[BaseException]
    review: Any  # airflow_graph_mail.mail.review

    @classmethod
    def prepare(cls, conn_id: str, sender: str | None) -> _Graph | str:
        """The polls' means, or what is wrong with the connection (a missing one, a bad field), in words."""
        import httpx
        from airflow.providers.common.compat.sdk import AirflowException

        from airflow_graph_mail.errors import GraphMailError
        from airflow_graph_mail.hooks.graph_mail import GraphMailHook
        from airflow_graph_mail.mail import review

        try:
            client = GraphMailHook(graph_mail_conn_id=conn_id).client
            user_path = client.call(sender).user_path
        except (GraphMailError, AirflowException) as err:
            return f"{type(err).__name__}: {err}"
        transport = client.transport
        session = transport.session
        proxies = session.merge_environment_settings(transport.base_url, {}, None, None, None)["proxies"]
        http = httpx.AsyncClient(verify=_tls(session.verify), proxy=proxies.get("https") or proxies.get("all"),
                                 timeout=transport.timeout, trust_env=False,
                                 headers={"User-Agent": "airflow-graph-mail", "Prefer": 'IdType="ImmutableId"'})
        return cls(transport.base_url, user_path, transport.credential, http, httpx.HTTPError, review)


def _tls(verify):
    """requests' ``verify`` (True, False, or a CA bundle file or directory) as httpx takes it."""
    if not isinstance(verify, str):
        return verify
    import os
    import ssl

    return ssl.create_default_context(capath=verify) if os.path.isdir(verify) else \
        ssl.create_default_context(cafile=verify)


class GraphDraftSentTrigger(BaseTrigger):
    """Yields one event: ``{"status": "sent", "message": {...}}``, ``{"status": "discarded", "how": ...}``,
    ``{"status": "timeout"}`` or ``{"status": "error", "error": ...}``."""

    def __init__(self, *, graph_mail_conn_id: str, message_id: str, sender: str | None = None,
                 poke_interval: float = 60.0, deadline: float | None = None):
        super().__init__()
        self.graph_mail_conn_id = graph_mail_conn_id
        self.message_id = message_id
        self.sender = sender
        self.poke_interval = float(poke_interval)
        self.deadline = deadline  # epoch seconds, or None to wait as long as the task may

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"graph_mail_conn_id": self.graph_mail_conn_id, "message_id": self.message_id,
                 "sender": self.sender, "poke_interval": self.poke_interval, "deadline": self.deadline})

    async def run(self):
        graph = await in_thread(_Graph.prepare, self.graph_mail_conn_id, self.sender)
        if isinstance(graph, str):  # a broken or missing connection, named
            yield TriggerEvent({"status": "error", "error": graph})
            return
        review = graph.review
        message_url = f"{graph.base_url}{graph.user_path}/messages/{quote(self.message_id, safe='')}?" + \
            urlencode({"$select": ",".join(review.SELECT)}, quote_via=quote)
        folder_url = f"{graph.base_url}{graph.user_path}/mailFolders/deleteditems?$select=id"
        deleted_items = ""
        async with graph.http as http:
            while True:
                try:
                    if not deleted_items:
                        deleted_items = (await self._get(http, graph, folder_url)).json()["id"]
                    answer = await self._get(http, graph, message_url)
                except _Wait as wait:
                    log.warning("Looking at draft %s: %s; looking again in %.0fs", self.message_id, wait.reason,
                                wait.seconds)
                    if self._past_deadline(wait.seconds):
                        yield TriggerEvent({"status": "timeout"})
                        return
                    await asyncio.sleep(wait.seconds)
                    continue
                except _Stop as stop:
                    yield TriggerEvent({"status": "error", "error": stop.reason})
                    return
                message = None if answer.status_code == 404 else answer.json()
                state = review.state_of(message, deleted_items)
                if state == review.SENT:
                    yield TriggerEvent({"status": "sent", "message": review.sent_summary(message or {})})
                    return
                if state != review.WAITING:
                    yield TriggerEvent({"status": "discarded",
                                        "how": "deleted" if message is None else "moved to Deleted Items"})
                    return
                if self._past_deadline(self.poke_interval):
                    yield TriggerEvent({"status": "timeout"})
                    return
                await asyncio.sleep(self.poke_interval)

    def _past_deadline(self, wait: float) -> bool:
        return self.deadline is not None and time.time() + wait > self.deadline

    async def _get(self, http, graph: _Graph, url: str):
        """One GET with a fresh-enough token; 404 is an answer (the draft is gone), a 401 renews the token once."""
        for attempt in (1, 2):
            token = await in_thread(graph.credential.get_token)
            try:
                answer = await http.get(url, headers={"Authorization": f"Bearer {token}"})
            except graph.network_error as err:
                raise _Wait(f"{type(err).__name__}", self.poke_interval) from None
            if answer.status_code in (200, 404):
                return answer
            if answer.status_code == 401 and attempt == 1:
                await in_thread(graph.credential.invalidate)
                continue
            reason = _graph_error(answer)
            if answer.status_code == 429 or answer.status_code >= 500:
                raise _Wait(reason, _retry_after(answer, self.poke_interval))
            raise _Stop(reason)
        raise _Stop("Graph answered 401 twice, with a renewed token")  # pragma: no cover - loop returns or raises


class _Wait(Exception):
    def __init__(self, reason: str, seconds: float):
        self.reason, self.seconds = reason, seconds


class _Stop(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _graph_error(answer) -> str:
    """Graph's status, code and message (never a header or token), with its request-id."""
    try:
        error = answer.json().get("error") or {}
    except ValueError:
        error = {}
    return (f"Graph answered {answer.status_code} {error.get('code', '')}: {error.get('message', '')} "
            f"(request-id {answer.headers.get('request-id', 'none')})").replace("  ", " ")


def _retry_after(answer, default: float) -> float:
    try:
        return max(float(answer.headers.get("Retry-After", "")), 1.0)
    except ValueError:
        return default
