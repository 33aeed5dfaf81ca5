"""Where every Graph mail trigger does its work in the triggerer: a few threads, and one client per connection.

The threads keep the event loop off the network, msal and imports. They are entered through asgiref's
``sync_to_async``: Airflow 3.0 to 3.2.1's triggerer carries a connection read (or a token handed to the log
masker) back to its loop only from such a thread, and crashes on one from a plain thread (apache/airflow#66412,
#67380); 2.x and later 3.x take either. asgiref itself is imported in the pool, never on the loop's thread.

One client per connection configuration serves every trigger of the process: one keep-alive pool (a few TLS
connections, not one per trigger), one token cache and one pacer per mailbox (Graph's 4 requests at once per
app and mailbox hold for all the triggers together). Each trigger reads its connection once, when it starts:
triggers started after a connection changed get a client built from the new one; running ones keep theirs.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import json
import math
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from airflow_graph_mail.errors import GraphConfigError

if TYPE_CHECKING:
    from airflow_graph_mail.graph.client import GraphMailClient

# A look is one GET (the review gate's first look two): at Graph's 100-300 ms per answer, 8 threads make 25-80
# looks a second, so 1,000 gates poking every 60 s use a third of them (bench/trigger_loop.py). A client's
# session keeps 8 connections per host: one per thread, none opened and dropped.
POOL_SIZE = 8
# Connection configurations whose clients are kept; past it the oldest is dropped (triggers using it keep it).
MAX_CLIENTS = 32
# Sleeps of a second or more end on a multiple of this on the loop's clock (bench/trigger_loop.py).
WAKE_GRID = 0.1
MAX_BACKOFF = 300.0  # seconds between looks while Graph keeps failing without a Retry-After

_clients: OrderedDict[str, GraphMailClient] = OrderedDict()
_clients_lock = threading.Lock()


@functools.cache
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="graph-mail-trigger")


@functools.cache
def _through_asgiref(sync):
    return sync.SyncToAsync(_call, thread_sensitive=False, executor=_threads())


def _call(function, *args):
    return function(*args)


@functools.cache
def _asgiref() -> Future:
    """asgiref.sync, imported once in the pool: never on the event loop's thread."""
    return _threads().submit(importlib.import_module, "asgiref.sync")


async def pooled(function, *args):
    """``function(*args)`` in the pool, through asgiref."""
    imported = _asgiref()
    sync = imported.result() if imported.done() else await asyncio.wrap_future(imported)
    return await _through_asgiref(sync)(function, *args)


async def sleep(seconds: float) -> None:
    """``asyncio.sleep``, a second or longer ending on the next tenth of a second of the loop's clock: triggers due
    in the same tenth wake in one turn of the loop and hand their looks to the pool together, which at hundreds
    of triggers costs the loop half as much per look as waking for each (a later poll by 0.1 s at most)."""
    if seconds >= 1.0 and math.isfinite(seconds):
        seconds += -(asyncio.get_running_loop().time() + seconds) % WAKE_GRID
    await asyncio.sleep(seconds)


def shared_client(conn_id: str) -> GraphMailClient:
    """The client for ``conn_id`` as it reads now, shared with every trigger on the same configuration; built
    (connection checked, session and token source made) by the first. Call it in the pool, never on the loop."""
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    key = _fingerprint(conn_id, GraphMailHook.get_connection(conn_id))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = GraphMailHook(graph_mail_conn_id=conn_id).get_conn()
            while len(_clients) > MAX_CLIENTS:
                _clients.popitem(last=False)
        else:
            _clients.move_to_end(key)
        return client


def forget_clients() -> None:
    """Drop every shared client (a test that wants a fresh triggerer process's first look)."""
    with _clients_lock:
        _clients.clear()


def _fingerprint(conn_id: str, conn: Any) -> str:
    """Everything a client is built from, hashed (the connection's secrets are never a key in memory)."""
    fields = [conn_id, *(getattr(conn, name, None) for name in ("conn_type", "host", "schema", "login", "password",
                                                                 "port", "extra"))]
    return hashlib.sha256(json.dumps(fields, default=str).encode()).hexdigest()


def seconds(name: str, value, problem: str = "a number of seconds") -> float:
    """A trigger's number of seconds, checked where it is built (its kwargs may have come through the database
    as text): finite, 0 or more, or a GraphConfigError naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GraphConfigError(f"{name}: {value!r} is not {problem}") from None
    if not math.isfinite(number) or number < 0:
        raise GraphConfigError(f"{name}: {number!r} is not {problem}")
    return number


def poke_and_deadline(poke_interval, deadline) -> tuple[float, float | None]:
    """A polling trigger's wait: how often it looks, and until when (epoch seconds; None: as long as the task
    may wait)."""
    return (seconds("poke_interval", poke_interval, "a number of seconds; give a finite number, 0 or more"),
            None if deadline is None else seconds("deadline", deadline, "a time; give epoch seconds or None"))


def backoff(err: BaseException, failures: int, interval: float) -> float:
    """How long a trigger waits after a failed look: Graph's Retry-After (read into 0-600 s), at least a second;
    without one, the interval doubled after each failure in a row, up to MAX_BACKOFF (or the interval)."""
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        return max(float(retry_after), 1.0)
    return min(max(interval, 1.0) * 2 ** min(failures - 1, 10), max(MAX_BACKOFF, interval))
