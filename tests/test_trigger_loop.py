"""Many triggers in one triggerer loop (issue 28): nothing they need is imported or built on the loop's thread,
one client per connection serves them all, and each still fires on its own event. Speed lives in
bench/trigger_loop.py; these pin behaviour."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

INBOX = "reports-in@contoso.com"


def first_payloads(*triggers, limit: float = 60.0) -> list[dict]:
    """Each trigger's first event, all run together in one event loop as the triggerer runs them."""
    async def first(trigger):
        async for event in trigger.run():
            return event.payload
        return None

    async def together():
        return await asyncio.gather(*(first(t) for t in triggers))

    return asyncio.run(asyncio.wait_for(together(), limit))


def gate(message_id: str, **kwargs):
    from airflow_graph_mail.triggers.graph_mail import GraphDraftSentTrigger

    kwargs.setdefault("poke_interval", 0.2)
    kwargs.setdefault("deadline", time.time() + 45)
    kwargs.setdefault("graph_mail_conn_id", "graph_mail_default")
    return GraphDraftSentTrigger(message_id=message_id, **kwargs)


# What a trigger's first look needs, and where it may happen: never on the loop's thread. The triggerer imports a
# trigger's module there (so those must stay light); everything behind a look loads and runs in the pool.
ON_THE_LOOP = r'''
import asyncio, json, sys, threading, time
import airflow.triggers.base  # what a triggerer has loaded before any trigger

LOOP = threading.get_ident()
HEAVY = ("asgiref", "anyio", "sniffio", "msal", "requests", "urllib3", "httpx", "charset_normalizer", "idna", "jwt")
OURS = ("airflow_graph_mail.graph", "airflow_graph_mail.hooks")
BUILT = ("/requests/", "/urllib3/", "/msal/", "/http/client.py", "/airflow_graph_mail/graph/",
         "/airflow_graph_mail/hooks/")
imported, ran = [], set()


class Imports:
    """Sees every module's first import, on whichever thread."""

    def find_spec(self, name, path=None, target=None):
        imported.append((threading.get_ident() == LOOP, name))
        return None


def calls(frame, event, arg):  # sys.setprofile: this thread only, the loop's
    if event == "call" and any(part in frame.f_code.co_filename for part in BUILT):
        ran.add(frame.f_code.co_filename.rsplit("/site-packages/", 1)[-1] + ":" + frame.f_code.co_name)


sys.meta_path.insert(0, Imports())
sys.setprofile(calls)
from airflow_graph_mail.triggers.graph_mail import GraphDraftSentTrigger  # on the loop's thread, as the triggerer
from airflow_graph_mail.triggers.inbound import GraphMailSensorTrigger
from airflow_graph_mail.triggers.mailbox import GraphOutboxTrigger

waiting, sent, inbox, sender = sys.argv[1:5]


async def first(trigger):
    async for event in trigger.run():
        return event.payload


async def main():
    deadline = time.time() + 30
    return await asyncio.gather(
        first(GraphDraftSentTrigger(graph_mail_conn_id="graph_mail_default", message_id=waiting, poke_interval=0.2,
                                    deadline=time.time() + 1.5)),
        first(GraphDraftSentTrigger(graph_mail_conn_id="graph_mail_default", message_id=sent, poke_interval=0.2,
                                    deadline=deadline)),
        first(GraphMailSensorTrigger(graph_mail_conn_id="graph_mail_default", mailbox=inbox, folder="inbox",
                                     filter={"sender": sender}, since="2000-01-01T00:00:00Z", poke_interval=0.2,
                                     deadline=deadline)),
        first(GraphOutboxTrigger(graph_mail_conn_id="graph_mail_default", keys=["nothing-waits"], poke_interval=0.2,
                                 deadline=deadline)))


payloads = asyncio.run(main())
sys.setprofile(None)
from airflow_graph_mail.triggers import pool

on_loop = sorted({n for loop, n in imported if loop and (n.split(".")[0] in HEAVY or n.startswith(OURS))})
elsewhere = sorted({n for loop, n in imported if not loop and (n.split(".")[0] in HEAVY or n.startswith(OURS))})
print(json.dumps({"payloads": [p["status"] for p in payloads], "on_loop": on_loop, "elsewhere": elsewhere,
                  "ran_on_loop": sorted(ran), "clients": len(pool._clients)}))
'''


def test_a_first_look_imports_and_builds_nothing_on_the_event_loop(hook, graph_emulator):
    """In a fresh process, as a triggerer's first trigger: asgiref, requests, msal, our graph modules, the client
    and its session are first imported and built in the pool's threads; the loop's thread only runs the
    triggers' coroutines. Three kinds of trigger on one connection share one client."""
    from airflow_graph_mail.mail.message import Message

    waiting = hook.create_draft(Message(to="board@example.com", subject="Waiting"))["id"]
    sent = hook.create_draft(Message(to="board@example.com", subject="Sent"))["id"]
    graph_emulator.inspect.send_as_reviewer(sent)
    graph_emulator.inbound.receive(to=INBOX, sender="orders@fabrikam.example", subject="Orders")
    done = subprocess.run([sys.executable, "-c", ON_THE_LOOP, waiting, sent, INBOX, "@fabrikam.example"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["payloads"] == ["timeout", "sent", "found", "left"]
    assert found["on_loop"] == [], found["on_loop"]
    assert found["ran_on_loop"] == [], found["ran_on_loop"]
    # the work did happen, in the pool: its imports are there, and one client served the four triggers
    assert {"asgiref.sync", "airflow_graph_mail.graph.client"} <= set(found["elsewhere"])  # 2.11 loads requests first
    assert found["clients"] == 1


def test_triggers_of_one_connection_share_one_client_and_each_fires_on_its_own_draft(hook, graph_emulator):
    """A dozen gates looking at once through one client (its session's few keep-alive connections, one token):
    each yields its own draft as sent, with what the reviewer changed."""
    from airflow_graph_mail.mail.message import Message
    from airflow_graph_mail.triggers import pool

    drafts = [hook.create_draft(Message(to="board@example.com", subject=f"Report {n}"))["id"] for n in range(12)]

    async def run_all():
        async def review_later():
            await asyncio.sleep(1.0)  # every gate has looked at least once
            for n, draft in enumerate(drafts):
                await asyncio.get_running_loop().run_in_executor(
                    None, graph_emulator.inspect.send_as_reviewer, draft, {"subject": f"Reviewed {n}"})

        async def first(trigger):
            async for event in trigger.run():
                return event.payload
            return None

        reviewing = asyncio.ensure_future(review_later())
        payloads = await asyncio.gather(*(first(gate(draft)) for draft in drafts))
        await reviewing
        return payloads

    payloads = asyncio.run(asyncio.wait_for(run_all(), 90))
    assert [p["status"] for p in payloads] == ["sent"] * 12
    assert [p["message"]["subject"] for p in payloads] == [f"Reviewed {n}" for n in range(12)]
    assert [p["message"]["id"] for p in payloads] == drafts
    (client,) = pool._clients.values()
    adapter = client.transport.session.get_adapter(graph_emulator.base_url)
    opened = sum(adapter.poolmanager.pools[key].num_connections for key in list(adapter.poolmanager.pools.keys()))
    assert 1 <= opened <= pool.POOL_SIZE < len(drafts)
    tokens = [r for r in graph_emulator.inspect.request_log if r["path"].endswith("/oauth2/v2.0/token")]
    assert len(tokens) <= 1  # the hook's own sign-in may have served the triggers' client too


def test_a_changed_connection_gives_the_triggers_started_after_it_a_client_of_its_own(connect, graph_emulator):
    """The client is chosen by what the connection holds when a trigger starts: another connection, or the same
    one changed (a rotated secret, another proxy), gets its own; a connection as it was reuses the first."""
    from airflow_graph_mail.mail.message import Message
    from airflow_graph_mail.triggers import pool

    draft = connect().create_draft(Message(to="board@example.com", subject="Sent"))["id"]
    graph_emulator.inspect.send_as_reviewer(draft)
    assert first_payloads(gate(draft))[0]["status"] == "sent"
    (first,) = pool._clients.values()
    connect("graph_mail_other")
    assert first_payloads(gate(draft, graph_mail_conn_id="graph_mail_other"))[0]["status"] == "sent"
    connect(extra={"timeout": 30})  # graph_mail_default, changed
    assert first_payloads(gate(draft))[0]["status"] == "sent"
    assert len(pool._clients) == 3 and first in pool._clients.values()
    connect()  # back as it was: the first client again
    assert first_payloads(gate(draft))[0]["status"] == "sent"
    assert len(pool._clients) == 3
    assert [c.transport.timeout for c in pool._clients.values()][-1] == first.transport.timeout


def test_a_poll_reuses_its_requests_preparation_but_never_its_headers(hook, graph_emulator):
    """The transport prepares a GET once per URL (a trigger asks for the same one at every poll); each request
    still carries its own client-request-id and the current token (a 401 renews it and asks again)."""
    from airflow_graph_mail.mail.message import Message
    from airflow_graph_mail.mail.review import SELECT

    draft = hook.create_draft(Message(to="board@example.com", subject="Polled"))["id"]
    client = hook.client
    call = client.call(None)
    graph_emulator.faults.add("get_message", 401)
    for _ in range(3):
        assert client.get_message(draft, call=call, select=SELECT)["subject"] == "Polled"
    looks = [r for r in graph_emulator.inspect.request_log if r["method"] == "GET" and "/messages/" in r["path"]]
    assert [r["status"] for r in looks] == [401, 200, 200, 200]
    ids = [r["client_request_id"] for r in looks]
    assert ids[0] == ids[1] and len(set(ids)) == 3  # one per request, its retry after the 401 included
    assert all(r["authorization"] for r in looks)
    assert len(client.transport._prepared) == 1


def test_a_long_sleep_ends_on_the_next_tenth_of_a_second_of_the_loop(monkeypatch):
    """Triggers due in the same tenth of a second wake together (one turn of the loop hands their looks to the
    pool); short and endless sleeps are left as asked."""
    from airflow_graph_mail.triggers import pool

    asked: list[float] = []

    async def recorded(seconds):
        asked.append(seconds)

    async def sleeps():
        loop = asyncio.get_running_loop()
        monkeypatch.setattr(loop, "time", lambda: 12_345.678)  # the loop's clock, held still
        monkeypatch.setattr(pool.asyncio, "sleep", recorded)
        for seconds in (1.0, 7.31, 60.0, 0.2, 0.0, float("inf")):
            await pool.sleep(seconds)

    asyncio.run(sleeps())
    for seconds, slept in zip((1.0, 7.31, 60.0), asked, strict=False):
        end = 12_345.678 + slept
        assert abs(end / pool.WAKE_GRID - round(end / pool.WAKE_GRID)) < 1e-6  # on the grid (float error aside)
        assert 0 <= slept - seconds < pool.WAKE_GRID
    assert asked[3:] == [0.2, 0.0, float("inf")]
