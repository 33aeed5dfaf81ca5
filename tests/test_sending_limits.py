"""Exchange Online's sending limits, planned against: the emulator at its default (Exchange Online) limits, its
clock moved by the test where a day must pass.

- A 25,000-recipient merge from one mailbox: through Airflow it completes over three 24-hour windows (deferred
  in between, no worker slot held), each row sent once and no 5.1.90 bounce; asked to fail, it fails before
  sending, naming the numbers and the choices.
- A 1,000-mail send: accepted at Graph's pace, delivered at Exchange's 30 a minute (~33 minutes), both reported.
- Least privilege: a Mail.Send-only connection on its first try and on a retry, each delivery_guarantee; an app
  restricted to other mailboxes gets an error naming the mailbox.
- The exactly-once lookup finds mail waiting in Drafts; the bounce report waits for the Outbox and tells rate
  limited bounces from bad addresses.

Rows carry many recipients each (a branch's customers in Bcc), so 25,000 recipients cost 50 sends.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import ROOT, as_context

from airflow_graph_mail import AccessDeniedError
from airflow_graph_mail.mail.idempotency import PROPERTY_ID
from airflow_graph_mail.mail.message import Message

DOCS_DAGS = ROOT / "example_dags" / "docs"
DAY = 24 * 3600
SEND_ONLY = "send-only-secret-value"


def when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


class TaskInstance:
    """What a task asks of its task instance here: its ids, its try, and XCom."""

    def __init__(self, try_number: int = 1, upstream: dict | None = None):
        self.dag_id, self.task_id, self.run_id, self.map_index = "limits", "send", "manual__1", -1
        self.try_number = try_number
        self.upstream = upstream or {}
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key, value):
        self.pushed[key] = json.loads(json.dumps(value))  # what XCom would store

    def xcom_pull(self, task_ids, key):
        return self.upstream.get(task_ids) if key == "outcomes" else None


def branches(count: int) -> list[dict]:
    """What example_dags/docs/merge_at_scale.py exports: a manager and 499 customers per branch."""
    return [{"branch": b, "manager": f"branch{b:03d}@example.com",
             "customers": [f"c{b:03d}-{n:03d}@example.com" for n in range(499)]} for b in range(count)]


def notices(rows, **fields):
    from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator

    return GraphMailMergeOperator(task_id="notices", rows=rows, key_field="manager", to="{{ row.manager }}",
                                  bcc="{{ row.customers }}", subject="Service notice for branch {{ row.branch }}",
                                  body="<p>Our service hours change.</p>", idempotency_key="notice", **fields)


def run(operator, ti: TaskInstance | None = None):
    context = {"ds": "2026-11-20", "params": {}, "ti": ti or TaskInstance()}
    operator.render_template_fields(context)
    return operator.execute(context)


def reports(emulator) -> list[dict]:
    return [m for m in emulator.inspect.messages(emulator.default_sender) if m["subject"].startswith("Undeliverable")]


# -- 25,000 recipients from one mailbox ---------------------------------------------------------------------


def test_25000_recipients_go_over_three_windows_each_row_once_through_airflow(run_dag, graph_emulator):
    """The example DAG: the merge sends the 20 rows that fit, defers (its trigger polls the mailbox), and goes on
    each time the test moves the emulator's clock past the 24-hour window, until all 50 rows went."""
    sender = graph_emulator.default_sender
    moves: list[dict] = []
    done = threading.Event()

    def move_the_clock_when_the_window_is_full():
        while not done.wait(0.5):
            budget = graph_emulator.inspect.budget(sender)
            if budget["recipientsUsed"] >= 10_000 and budget["queued"] == 0:
                moves.append(budget)
                graph_emulator.backend.clock.advance(DAY + 60)

    mover = threading.Thread(target=move_the_clock_when_the_window_is_full, daemon=True)
    mover.start()
    try:
        result = run_dag("merge_at_scale", dags_folder=DOCS_DAGS, MERGE_POKE_SECONDS="1", BOUNCE_SETTLE_SECONDS="1",
                         timeout=400)
    finally:
        done.set()
        mover.join()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert len(moves) == 2  # three windows
    # two deferrals (Airflow 2's `dags test` prints a task's log line twice: compare what they say, not how often)
    assert set(re.findall(r"(\d+) row\(s\) wait for the mailbox's 24-hour window to free, from row (\d+)",
                          output)) == {("30", "20"), ("10", "40")}
    assert "running trigger in line" in output  # deferred: no worker slot held while waiting
    assert "50 message(s) to 25,000 recipient(s)" in output and "20 message(s) fit now" in output
    keys = graph_emulator.inspect.deliveries(PROPERTY_ID)
    assert len(keys) == 50 and set(keys.values()) == {1}  # every row sent, each once
    sent = graph_emulator.inspect.messages(sender, "sentitems", with_content=False)
    days = sorted({when(m["sentDateTime"]).date() for m in sent})
    assert len(sent) == 50 and len(days) == 3
    assert reports(graph_emulator) == []  # no 5.1.90, no bounce at all
    assert len(graph_emulator.inspect.messages("c049-498@example.com")) == 1


def test_25000_recipients_fail_before_sending_naming_the_numbers(connect, graph_emulator):
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_graph_mail import SendingLimitError

    connect()
    with pytest.raises(AirflowFailException) as raised:
        run(notices(branches(50)))
    error = raised.value.__cause__
    assert isinstance(error, SendingLimitError) and "(not retried" in str(raised.value)
    text = str(error)
    for part in ("50 message(s) to 25,000 recipient(s) from airflow@contoso.com",
                 "the mailbox may send to 10,000 recipients per 24 hours; it sent to 0 recipient(s) in the last 24 "
                 "hours and 0 wait in its Outbox; 10,000 left now",
                 "20 message(s) fit now", "The other 30 must wait for the 24-hour window to free",
                 "would bounce the rest with 550 5.1.90", "Nothing was sent",
                 "Choose over_limit='defer'", "split the batch over days, or send parts from other mailboxes"):
        assert part in text, text
    assert error.plan.as_dict()["remaining"] == 10_000
    assert graph_emulator.inspect.side_effect_requests == [] and graph_emulator.backend.delivery.sends == 0


def test_check_only_reports_the_plan_against_what_the_mailbox_sent_by_the_servers_clock(connect, graph_emulator):
    """Sent Items read by the server's time: a moved clock moves the plan."""
    hook = connect()
    started = time.monotonic()
    hook.send_many([Message(to="ann@example.com", bcc=[f"b{i}@example.com" for i in range(499)], subject=f"s{n}")
                    for n in range(8)], keys=[f"early-{n}" for n in range(8)])
    graph_emulator.backend.clock.advance(12 * 3600)
    plan = run(notices(branches(14), check_only=True))["plan"]
    took = dt.timedelta(seconds=time.monotonic() - started + 1)  # the clock also runs in real time; stamps to 1 s
    assert (plan["sent_last_24h"], plan["remaining"], plan["fitting"], plan["fits"]) == (4000, 6000, 12, False)
    assert "14 message(s) to 7,000 recipient(s)" in plan["text"] and "6,000 left now" in plan["text"]
    left = when(plan["all_leave_by"]) - when(plan["server_time"])  # when the 8 turn 24 hours old
    assert dt.timedelta(hours=12) - took <= left <= dt.timedelta(hours=12, seconds=1)
    graph_emulator.backend.clock.advance(12 * 3600 + 1)
    again = run(notices(branches(14), check_only=True))["plan"]
    assert (again["sent_last_24h"], again["fits"]) == (0, True)
    assert graph_emulator.backend.delivery.sends == 8  # check_only sent nothing


# -- accepted and delivered ---------------------------------------------------------------------------------


def test_a_1000_mail_send_is_accepted_at_graphs_pace_and_delivered_over_33_minutes(connect, graph_emulator, caplog):
    hook = connect()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="airflow_graph_mail.graph.bulk"):
        outcomes = hook.send_many([Message(to=f"u{n}@example.com", subject=f"n{n}") for n in range(1000)],
                                  keys=[f"thousand-{n}" for n in range(1000)])
    accepted = time.monotonic() - started
    assert {o["status"] for o in outcomes} == {"sent"}
    first = min(when(o["accepted_at"]) for o in outcomes)
    last = max(when(o["leaves_at"]) for o in outcomes)
    assert dt.timedelta(minutes=32) <= last - first <= dt.timedelta(minutes=34)
    line = next(r.getMessage() for r in caplog.records if "accepted in" in r.getMessage())
    assert line.startswith("1000 message(s) accepted in ") and "at 30 a minute" in line
    budget = graph_emulator.inspect.budget(graph_emulator.default_sender)
    assert budget["queued"] == 1000 - 30 and when(budget["lastLeavesAt"]) - last < dt.timedelta(seconds=90)
    graph_emulator.backend.clock.advance(34 * 60)
    sent = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems", with_content=False)
    assert len(sent) == 1000
    assert abs(max(when(m["sentDateTime"]) for m in sent) - last) <= dt.timedelta(seconds=90)  # as planned
    assert accepted < 120


# -- least privilege ------------------------------------------------------------------------------------------


def test_a_mail_send_only_connection_on_first_try_and_on_retry(connect, graph_emulator, caplog):
    """First try: sent, planned from the batch alone. Retry: exactly once needs a read permission, so it fails
    naming it and the two other choices; each choice does what it says."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_graph_mail import GraphSendMailOperator

    app = graph_emulator.entra.add_app(secret=SEND_ONLY, roles=["Mail.Send"])
    hook = connect(login=app.client_id, password=SEND_ONLY)
    ok, report = hook.test_connection()
    assert ok and ("Reading airflow@contoso.com's Sent Items is refused (403 ErrorAccessDenied). Exactly once "
                   "across retries needs a read permission there (Mail.ReadWrite, or Mail.Read)") in report
    send = GraphSendMailOperator(task_id="send", to="ann@example.com", subject="Weekly")
    assert send.execute(as_context({"ti": TaskInstance(1)})) == "sent"
    with pytest.raises(AirflowFailException) as raised:
        send.execute(as_context({"ti": TaskInstance(2)}))
    text = str(raised.value)
    assert "NoLookupError" in text and "this retry must look for what an earlier attempt sent" in text
    assert "grant Mail.ReadWrite (or Mail.Read)" in text and "delivery_guarantee: at_least_once" in text
    assert "at_most_once" in text and "Nothing was sent" in text
    assert list(graph_emulator.inspect.deliveries(PROPERTY_ID).values()) == [1]
    connect(login=app.client_id, password=SEND_ONLY, extra={"delivery_guarantee": "at_most_once"})
    assert send.execute(as_context({"ti": TaskInstance(2)})) == "not_resent"
    connect(login=app.client_id, password=SEND_ONLY, extra={"delivery_guarantee": "at_least_once"})
    with caplog.at_level(logging.WARNING):
        assert send.execute(as_context({"ti": TaskInstance(2)})) == "sent"
    assert "delivery_guarantee=at_least_once: sending it again, so it may arrive twice" in caplog.text
    assert list(graph_emulator.inspect.deliveries(PROPERTY_ID).values()) == [2]  # as chosen: twice
    with caplog.at_level(logging.WARNING):
        outcomes = hook.send_many([Message(to="bob@example.com")], keys=["planned"])
    assert outcomes[0]["status"] == "sent"
    assert "the app may not read airflow@contoso.com's Sent Items (403 ErrorAccessDenied), so this plan counts " \
           "the batch alone" in caplog.text


@pytest.mark.parametrize(("scope", "said"), [
    ("rbac", "If it has them, it is restricted to other mailboxes than airflow@contoso.com (Exchange RBAC for "
             "Applications' management scope, or an application access policy)"),
    ("access_policy", "an application access policy keeps this app from mailbox airflow@contoso.com")])
def test_an_app_restricted_to_other_mailboxes_gets_an_error_naming_the_mailbox(connect, graph_emulator, scope,
                                                                                said):
    graph_emulator.backend.store.add_user("reports@contoso.com")
    app = graph_emulator.entra.add_app(secret="scoped-secret-value", mailboxes=["reports@contoso.com"], scope=scope)
    hook = connect(login=app.client_id, password="scoped-secret-value")
    with pytest.raises(AccessDeniedError) as raised:
        hook.send_mail(Message(to="ann@example.com"))
    assert said in str(raised.value) and raised.value.permanent
    assert hook.send_mail(Message(to="ann@example.com"), sender="reports@contoso.com") == "sent"  # inside the scope
    ok, report = hook.test_connection()
    expected = ("An application access policy keeps this app from airflow@contoso.com" if scope == "access_policy"
                else "restricted to mailboxes that leave out airflow@contoso.com")
    assert ok and expected in report


# -- exactly once, and the bounce report --------------------------------------------------------------------


def test_after_a_lost_answer_the_lookup_finds_the_mail_waiting_in_drafts(connect, graph_emulator):
    """Graph's own account of sendMail puts a submitted mail in Drafts until it leaves: found there (no longer a
    draft), it is not sent again."""
    graph_emulator.backend.set_limits(queue_folder="drafts", message_rate=1)
    hook = connect(extra={"retry_backoff": 0.01})
    hook.send_mail(Message(to="ann@example.com"), idempotency_key="first")
    graph_emulator.faults.add("send_mail", "accept_504")
    assert hook.send_mail(Message(to="ann@example.com"), idempotency_key="waiting") == "sent"
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == {"first": 1, "waiting": 1}
    (waiting,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts")
    assert waiting["isDraft"] is False


def test_the_bounce_report_waits_for_the_outbox_and_names_rate_limited_rows(connect, graph_emulator, capsys):
    """35 statements: 30 leave at once, 5 wait a minute in the Outbox. Meanwhile the mailbox's daily limit is
    lowered to 31 recipients (as an outbound spam policy's may be), so 4 of the 5 bounce 5.1.90 when they leave.
    The report waits until they left, then names those 4 as rate limited (resend later), apart from the
    unknown address."""
    from airflow_graph_mail.operators.bounce_report import GraphBounceReportOperator

    hook = connect()
    people = ["nobody@contoso.com"] + [f"c{n:02d}@example.com" for n in range(34)]  # unknown in the tenant: 5.1.10
    outcomes = hook.send_many([Message(to=address, subject="Statement") for address in people],
                              keys=[f"statement/{n}" for n in range(35)], concurrency=1)
    assert len(graph_emulator.inspect.outbox(graph_emulator.default_sender)) == 5
    graph_emulator.backend.set_limits(recipient_rate=31)
    threading.Timer(1.0, graph_emulator.backend.clock.advance, [62]).start()  # a minute passes: they leave
    report = GraphBounceReportOperator(task_id="bounces", sent_by="statements", settle=0, fail_on_bounce=False,
                                       poke_interval=0.2)
    result = report.execute(as_context({"ti": TaskInstance(upstream={"statements": outcomes}),
                                        "dag_run": SimpleNamespace(start_date=dt.datetime.now(dt.timezone.utc))}))
    logged = capsys.readouterr().out  # the operator's own lines go through Airflow's logging
    assert "Waiting until the mails have left the Outbox" in logged
    limited = [b for b in result["bounces"] if b["kind"] == "rate_limited"]
    assert [b["status"] for b in limited] == ["5.1.90"] * 4 and result["rate_limited"] == 4
    assert all(b["advice"].startswith("resend after the mailbox's 24-hour window frees") for b in limited)
    assert "rate limited: resend later" in limited[0]["meaning"]
    (address,) = [b for b in result["bounces"] if b["kind"] == "address"]
    assert (address["address"], address["status"]) == ("nobody@contoso.com", "5.1.10")
    assert sorted(r["position"] for r in result["resend"]) == [31, 32, 33, 34]
    assert "4 mail(s) can be sent again later" in logged and "Rate limited, not a bad address" in logged
