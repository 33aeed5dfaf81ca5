"""Bad inputs to the review gate, one row each, through both of its roads: the sensor's poke (poke and
reschedule modes, and the first look of a deferrable gate) and the trigger the triggerer runs.

Every row asserts the text (naming the field: ``message_id`` or ``sender``), that the poke fails the task
(AirflowFailException, even with ``on_discard="skip"``: a typo is never the reviewer's decision), that the
trigger's event says the same and is permanent, that nothing but GETs reached Graph, and how many: none for
what is checked here, one per road for what only Graph can judge (an id it cannot parse, a mailbox it does
not know, a permission it refuses). Hostile Retry-After values and the gate's own arguments have tables of
their own.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from airflow_graph_mail import GraphConfigError
from airflow_graph_mail.mail.message import Message

if TYPE_CHECKING:
    from graph_mail_emulator import GraphEmulator

CONN = "graph_mail_gate"
DRAFT = "use the draft the row made"


@dataclass
class Ctx:
    connect: Callable
    emulator: GraphEmulator

    def draft(self) -> str:
        return self.connect(CONN).create_draft(Message(to="board@example.com", subject="For review"))["id"]


def gate(message_id=DRAFT, **arguments):
    """The gate's arguments for a row; ``DRAFT`` stands for a real draft made first."""
    def setup(ctx: Ctx) -> dict:
        return {"message_id": ctx.draft() if message_id is DRAFT else message_id, **arguments}
    return setup


def app_without_mail_read(ctx: Ctx) -> dict:
    draft = ctx.draft()
    app = ctx.emulator.entra.add_app(secret="send-only", roles=["Mail.Send"])
    ctx.connect(CONN, login=app.client_id, password="send-only")
    return {"message_id": draft}


def mailbox_without_exchange(ctx: Ctx) -> dict:
    ctx.emulator.backend.store.add_user("onprem@contoso.com", rest_enabled=False)
    return {"message_id": ctx.draft(), "sender": "onprem@contoso.com"}


def connection_without_sender(ctx: Ctx) -> dict:
    draft = ctx.draft()
    ctx.connect(CONN, extra={"sender": None})
    return {"message_id": draft}


TAKE_THE_DRAFT_ID = "pass the draft id GraphDraftOperator pushes as XCom draft_id"
# (case, setup, field named, text, GETs to Graph per road)
ROWS = [
    # -- the draft id: what a template renders by mistake --------------------------------------------------
    ("id rendered from an xcom_pull that found nothing", gate("None"), "message_id",
     "'None' is what a template renders when xcom_pull finds nothing (a misspelled task id or key?); "
     + TAKE_THE_DRAFT_ID, 0),
    ("id rendered as null", gate("null"), "message_id", "'null' is what a template renders when xcom_pull finds "
     "nothing", 0),
    ("id that is no value at all", gate(None), "message_id", "expected the draft's id as text, got NoneType", 0),
    ("id that is a list", gate(["AAMkAG"]), "message_id", "expected the draft's id as text, got list", 0),
    ("empty id", gate(""), "message_id", "empty draft id; " + TAKE_THE_DRAFT_ID, 0),
    ("blank id", gate("   "), "message_id", "empty draft id; " + TAKE_THE_DRAFT_ID, 0),
    ("id with a line break", gate("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0\n"), "message_id",
     "holds a space, line break or control character; Graph's ids have none", 0),
    ("id with a space inside", gate("AAkALg AAAAAAHYQDEapmEc2byACqAC-EWg0"), "message_id",
     "holds a space, line break or control character", 0),
    ("id longer than any Graph id", gate("AA" + "x" * 5000), "message_id",
     "5,002 characters; Graph's message ids are a few hundred at most", 0),
    # -- the draft id: only Graph knows its ids' structure -------------------------------------------------
    ("id Graph cannot parse", gate("AAMkAGnothere"), "message_id",
     "Graph cannot read 'AAMkAGnothere' as a message id (400 ErrorInvalidIdMalformed", 1),
    ("id of another kind of text", gate("report-2026-11-20"), "message_id",
     "Graph cannot read 'report-2026-11-20' as a message id", 1),
    ("id with path and query characters stays one segment", gate("AAMk/../../me?$top=1#x"), "message_id",
     "Graph cannot read 'AAMk/../../me?$top=1#x' as a message id", 1),
    ("unrendered template as the id", gate("{{ ti.xcom_pull('make_draft', key='draft_id') }}"), "message_id",
     "holds a space, line break or control character", 0),
    # -- the mailbox ---------------------------------------------------------------------------------------
    ("mailbox that does not exist", gate(sender="nobody@example.com"), "sender",
     "Graph knows no mailbox 'nobody@example.com' (404 ErrorInvalidUser", 1),
    ("mailbox that is not an address", gate(sender="board"), "sender", "'board' is not a mailbox", 0),
    ("mailbox with a header injected", gate(sender="ann@example.com\r\nBcc: eve@evil.example"), "sender",
     "holds a line break or control character", 0),
    ("mailbox that is a number", gate(sender=5), "sender",
     "expected a mailbox address, 'me' or a user's object id, got 5", 0),
    ("empty mailbox", gate(sender=""), "sender", "expected a mailbox address, 'me' or a user's object id, got ''",
     0),
    ("no mailbox anywhere", connection_without_sender, "sender",
     "no mailbox to send from; set 'sender' in the connection or the call", 0),
    ("'me' with an app's token", gate(sender="me"), None,
     "Graph answered 400 BadRequest: /me request is only valid with delegated authentication flow.", 1),
    ("mailbox without Exchange Online", mailbox_without_exchange, None, "no Exchange Online mailbox", 1),
    # -- what the app may read -----------------------------------------------------------------------------
    ("app without a permission to read mail", app_without_mail_read, None,
     "Graph answered 403 ErrorAccessDenied: Access is denied. Check credentials and try again.", 1),
]


def test_the_table_covers_every_way_in():
    assert len(ROWS) >= 20 and len({row[0] for row in ROWS}) == len(ROWS)


def first_payload(trigger) -> dict:
    async def run():
        async for event in trigger.run():
            return event.payload
        return None

    return asyncio.run(asyncio.wait_for(run(), 60))


@pytest.mark.parametrize(("case", "setup", "field", "text", "gets"), ROWS, ids=[row[0] for row in ROWS])
def test_a_bad_id_or_mailbox_fails_the_gate_by_either_road_naming_it(connect, graph_emulator, case, setup, field,
                                                                     text, gets):
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_graph_mail.sensors.graph_mail import GraphDraftSentSensor
    from airflow_graph_mail.triggers.graph_mail import GraphDraftSentTrigger

    connect(CONN)
    arguments = setup(Ctx(connect, graph_emulator))
    seen = len(graph_emulator.inspect.request_log)
    with pytest.raises(AirflowFailException) as raised:
        GraphDraftSentSensor(task_id="wait_for_review", on_discard="skip", graph_mail_conn_id=CONN,
                             **arguments).poke({})
    payload = first_payload(GraphDraftSentTrigger(graph_mail_conn_id=CONN, poke_interval=0.2,
                                                  deadline=time.time() + 30, **arguments))
    assert payload["status"] == "error" and payload["permanent"] is True, payload
    for said in (str(raised.value), payload["error"]):
        assert text in said
        assert field is None or said.startswith(f"{field}: "), said
        assert "discarded" not in said
    logged = list(graph_emulator.inspect.request_log)[seen:]
    after = [r for r in logged if "/oauth2/" not in r["path"]]  # sign-ins aside
    assert {r["method"] for r in after} <= {"GET"}, after
    assert len([r for r in after if r["path"].startswith("/v1.0/")]) == 2 * gets, after


# -- the gate's own arguments, checked when the DAG file is parsed -------------------------------------


def sensor(**arguments):
    def build():
        from airflow_graph_mail.sensors.graph_mail import GraphDraftSentSensor

        GraphDraftSentSensor(**{"task_id": "wait_for_review", "message_id": "AAkALg", **arguments})
    return build


def trigger(**arguments):
    def build():
        from airflow_graph_mail.triggers.graph_mail import GraphDraftSentTrigger

        GraphDraftSentTrigger(**{"graph_mail_conn_id": CONN, "message_id": "AAkALg", **arguments})
    return build


ARGUMENTS = [
    ("on_discard that is neither", sensor(on_discard="maybe"), "on_discard: 'maybe' is not 'fail' or 'skip'"),
    ("deferrable as text", sensor(deferrable="yes"), "deferrable: expected bool, got 'yes'"),
    ("connection id that is not text", sensor(graph_mail_conn_id=5), "graph_mail_conn_id: expected str, got 5"),
    # A sensor's poke_interval and timeout are Airflow's to check (nan and inf included); a trigger's are ours.
    ("trigger poke interval of nan", trigger(poke_interval=math.nan),
     "poke_interval: nan is not a number of seconds; give a finite number, 0 or more"),
    ("trigger poke interval of infinity", trigger(poke_interval=math.inf), "poke_interval: inf is not a number"),
    ("trigger poke interval as text", trigger(poke_interval="soon"), "poke_interval: 'soon' is not a number"),
    ("trigger poke interval below zero", trigger(poke_interval=-1), "poke_interval: -1.0 is not a number of seconds"),
    ("trigger deadline of nan", trigger(deadline=math.nan), "deadline: nan is not a time; give epoch seconds or None"),
    ("trigger deadline of infinity", trigger(deadline=math.inf), "deadline: inf is not a time"),
]


@pytest.mark.parametrize(("case", "build", "text"), ARGUMENTS, ids=[row[0] for row in ARGUMENTS])
def test_a_bad_gate_argument_fails_when_the_dag_is_parsed(case, build, text):
    with pytest.raises(GraphConfigError) as raised:
        build()
    assert str(raised.value).startswith(text)


# -- Retry-After from outside: any value lands in a sane range -----------------------------------------

RETRY_AFTER = [
    ("5", 5.0), ("0.5", 0.5), (" 7 ", 7.0), ("0", 0.0), ("-3", 0.0), ("-inf", 0.0),
    ("nan", None), ("NaN", None), ("", None), (None, None), ("soon", None), ("1e", None),
    ("inf", 600.0), ("Infinity", 600.0), ("1e400", 600.0), ("99999999", 600.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("Fri, 31 Dec 9999 23:59:59 GMT", 600.0),
]


@pytest.mark.parametrize(("value", "seconds"), RETRY_AFTER, ids=[repr(v) for v, _ in RETRY_AFTER])
def test_a_hostile_retry_after_is_read_into_a_sane_range(value, seconds):
    """Unreadable (nan included) means "back off as usual"; anything else is clamped to 0-600 s."""
    from airflow_graph_mail.graph.retry import retry_after_seconds

    assert retry_after_seconds(value) == seconds
