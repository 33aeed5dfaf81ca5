"""Bulk sending: the per-mailbox pacer, send_many's outcomes, and a soak through every fault."""

from __future__ import annotations

import threading
import time
from collections import Counter

from helpers import as_context

from airflow_graph_mail.graph.pacing import MailboxPacer
from airflow_graph_mail.mail.idempotency import PROPERTY_ID
from airflow_graph_mail.mail.message import Message

FAST = {"retry_backoff": 0.02, "retry_max_wait": 60}


def mail(i: int) -> Message:
    return Message(to=f"user{i}@example.com", subject=f"Statement {i}", body=f"<p>Dear {i}</p>")


def test_pacer_halves_on_throttling_pauses_everyone_and_recovers():
    pacer = MailboxPacer(4)
    pacer.throttled(0.3)
    assert pacer.allowed == 2
    started = time.monotonic()
    with pacer.slot():
        waited = time.monotonic() - started
    assert waited >= 0.25
    pacer.throttled(0)
    pacer.throttled(0)
    assert pacer.allowed == 1
    for _ in range(4 + 8 + 12):
        pacer.succeeded()
    assert pacer.allowed == 4


def test_pacer_never_exceeds_its_slots():
    pacer = MailboxPacer(3)
    busy, peak, lock = [0], [0], threading.Lock()

    def work():
        with pacer.slot():
            with lock:
                busy[0] += 1
                peak[0] = max(peak[0], busy[0])
            time.sleep(0.01)
            with lock:
                busy[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 3


def test_send_many_reports_each_outcome_in_order(connect, graph_emulator):
    hook = connect(extra=FAST)
    messages = [mail(i) for i in range(12)]
    graph_emulator.faults.add("send_mail", 400, skip=5)  # Graph refuses the 6th message outright
    outcomes = hook.send_many(messages, keys=[f"batch/{i}" for i in range(12)], concurrency=1)
    assert [o["position"] for o in outcomes] == list(range(12))
    assert [o["status"] for o in outcomes].count("sent") == 11
    failed = outcomes[5]
    assert failed["status"] == "failed" and "400 BadRequest" in failed["error"]
    assert failed["to"] == ["user5@example.com"] and failed["key"] == "batch/5"
    assert failed["subject"] == "Statement 5"
    again = hook.send_many(messages, keys=[f"batch/{i}" for i in range(12)], check_first=True)
    assert [o["status"] for o in again].count("already_sent") == 11
    assert set(graph_emulator.inspect.deliveries(PROPERTY_ID).values()) == {1}


def test_send_many_checks_every_message_before_sending_any(connect, graph_emulator):
    import pytest

    from airflow_graph_mail import MessageValidationError

    hook = connect(extra=FAST)
    bad = {"subject": "x", "body": {"contentType": "text", "content": "x"},
           "toRecipients": [{"emailAddress": {"address": "nobody@localhost"}}]}
    with pytest.raises(MessageValidationError, match=r"message 2: toRecipients: 'nobody@localhost'"):
        hook.send_many([mail(0), mail(1), bad])
    with pytest.raises(MessageValidationError, match="message 1: to: no recipients"):
        hook.send_many([mail(0), Message(subject="nobody")])
    assert graph_emulator.inspect.side_effect_requests == []


def test_send_many_slows_down_when_the_mailbox_throttles(connect, graph_emulator):
    graph_emulator.backend.set_limits(mailbox_concurrency=2, latency=0.05)
    hook = connect(extra=FAST)
    outcomes = hook.send_many([mail(i) for i in range(40)], keys=[f"t/{i}" for i in range(40)], concurrency=4)
    assert {o["status"] for o in outcomes} == {"sent"}
    throttled = [r for r in graph_emulator.inspect.request_log if r["status"] == 429]
    assert throttled, "the emulator's limit of 2 was never hit"
    assert len(throttled) < 20  # the pacer halved its slots instead of hammering the mailbox
    assert len(graph_emulator.inspect.deliveries(PROPERTY_ID)) == 40


def test_soak_300_messages_through_every_fault_exactly_once(connect, graph_emulator):
    """Each fault at its own rate, 24% of sends in all, and faults on the lookups too.

    A send whose answer is lost and whose lookups then fail until the operation's retry budget is spent is
    "unknown" (by design: rare at these rates, and the four threads draw faults in no fixed order, so it cannot
    be ruled out); the task's retry settles it by looking first. Exactly once is what holds after that."""
    hook = connect(extra={**FAST, "timeout": 1})
    graph_emulator.faults.add_rates(["send_mail"], {429: 0.05, 503: 0.04, 504: 0.02, "accept_504": 0.04,
                                                    "drop": 0.03, "drop_after": 0.04, "slow": 0.02},
                                    retry_after=0.05, delay=1.3, seed=20261122)
    graph_emulator.faults.add_rates(["list_messages"], {503: 0.1, 429: 0.05}, retry_after=0.05)
    keys = [f"soak/{i}" for i in range(300)]
    messages = [mail(i) for i in range(300)]
    outcomes = hook.send_many(messages, keys=keys)
    first = Counter(o["status"] for o in outcomes)
    assert set(first) <= {"sent", "unknown"} and first["sent"] >= 297, first
    assert all("no clear answer from Graph" in o["error"] for o in outcomes if o["status"] == "unknown"), outcomes
    fired = Counter(action for route, action in graph_emulator.faults.fired if route == "send_mail")
    assert set(fired) == {429, 503, 504, "accept_504", "drop", "drop_after", "slow"}
    assert sum(fired.values()) >= 0.2 * 300
    graph_emulator.faults.clear()
    graph_emulator.backend.clock.advance(10 * 60)  # 30 a minute leave the Outbox: 300 in 10 minutes
    again = hook.send_many(messages, keys=keys, check_first=True)  # the task's retry
    assert all(a["status"] == "already_sent" for o, a in zip(outcomes, again, strict=True) if o["status"] == "sent")
    assert {a["status"] for a in again} <= {"already_sent", "sent"}  # each unknown settled: it went, or goes now
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == dict.fromkeys(keys, 1)  # none lost, none twice
    graph_emulator.backend.clock.advance(60)
    for i in (0, 150, 299):
        assert len(graph_emulator.inspect.messages(f"user{i}@example.com")) == 1
    assert graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts") == []


def test_a_merge_renders_each_row_once_to_check_and_once_to_send(connect, graph_emulator):
    """Memory stays flat with the rows: each row is rendered (and checked) for the check pass, then again as it is
    sent, and never a third time; check_only renders each once and sends nothing."""
    from airflow.providers.common.compat.sdk import DAG

    from airflow_graph_mail import GraphMailMergeOperator

    connect("graph_mail_default", extra=FAST)
    rendered: Counter = Counter()

    def seen(row):
        rendered[row["email"]] += 1
        return row["email"]

    rows = [{"email": f"row{i}@example.com"} for i in range(3)]
    for check_only, expected in ((True, 1), (False, 2)):
        rendered.clear()
        with DAG(f"merge_renders_{check_only}", schedule=None, user_defined_macros={"seen": seen}):
            merge = GraphMailMergeOperator(task_id="merge", rows=rows, to="{{ seen(row) }}", subject="Statement",
                                           idempotency_key="merge-renders", check_only=check_only)
        pushed: dict = {}
        ti = type("TaskInstance", (), {"xcom_push": lambda self, key, value, into=pushed: into.update({key: value})})()
        context = as_context({"params": {}, "ti": ti})
        merge.render_template_fields(context)
        counts = merge.execute(context)
        assert rendered == {row["email"]: expected for row in rows}, check_only
    assert counts == {"sent": 3}
    assert sorted(o["to"][0] for o in pushed["outcomes"]) == [row["email"] for row in rows]
    assert graph_emulator.backend.delivery.sends == 3
