"""Retries and exactly-once delivery through the hook, against the emulator's faults over HTTPS."""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest
import requests

from airflow_graph_mail import GraphRequestError, OutcomeUnknownError, ThrottledError
from airflow_graph_mail.graph.retry import RetryPolicy, never_sent, retry_after_seconds
from airflow_graph_mail.mail.idempotency import PROPERTY_ID, make_key
from airflow_graph_mail.mail.message import Message

FAST = {"retry_backoff": 0.02, "retry_max_wait": 20}


@pytest.fixture
def fast_hook(connect):
    """Real retry logic with short waits."""
    return connect(extra=FAST)


def note(to="ann@example.com", subject="Report", **kwargs) -> Message:
    return Message(to=to, subject=subject, body="<p>numbers</p>", **kwargs)


def sends(emulator, route="/sendMail") -> list[dict]:
    return [r for r in emulator.inspect.request_log if r["path"].endswith(route) and r["method"] == "POST"]


def test_retry_after_in_seconds_or_as_an_http_date():
    from email.utils import formatdate

    assert retry_after_seconds("7") == 7.0
    in_30_s = retry_after_seconds(formatdate(time.time() + 30, usegmt=True))
    assert in_30_s is not None and 25 < in_30_s <= 30
    assert retry_after_seconds("Sun, 22 Nov 2020 09:00:00 GMT") == 0.0  # in the past: now
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_budget_bounds_retries_and_total_wait():
    waits: list[float] = []
    budget = RetryPolicy(max_wait=10, backoff=1, max_retries=3, sleep=waits.append).budget()
    assert budget.delay(retry_after=11) is None  # more than the whole budget
    while (delay := budget.delay()) is not None:
        budget.wait(delay)
    assert len(waits) <= 3 and sum(waits) <= 10
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0  # exponential, with jitter


def test_a_refused_connection_was_never_sent():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: the connection is refused
        with pytest.raises(requests.ConnectionError) as refused:
            requests.post(f"https://127.0.0.1:{port}/", timeout=2)
    assert never_sent(refused.value)
    assert not never_sent(requests.ConnectionError("Connection aborted.", ConnectionResetError()))
    assert not never_sent(requests.ReadTimeout())


def test_429_waits_for_retry_after_and_logs_reason_and_request_id(fast_hook, graph_emulator, caplog):
    graph_emulator.faults.add("send_mail", 429, times=2, retry_after=0.2)
    caplog.set_level(logging.WARNING, logger="airflow_graph_mail")
    assert fast_hook.send_mail(note()) == "sent"
    attempts = sends(graph_emulator)
    assert [r["status"] for r in attempts] == [429, 429, 202]
    assert attempts[2]["time"] - attempts[0]["time"] >= 0.4
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and all("429 TooManyRequests (request-id " in m and "in 0.2s" in m for m in retries)
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1


def test_throttling_gives_up_when_the_budget_is_spent(connect, graph_emulator):
    hook = connect(extra={"retry_max_wait": 1})
    graph_emulator.faults.add("send_mail", 429, times=99, retry_after=0.4)
    with pytest.raises(ThrottledError):
        hook.send_mail(note())
    assert len(sends(graph_emulator)) == 3  # 2 waits of 0.4 s fit in 1 s, a third does not
    assert graph_emulator.inspect.messages("ann@example.com") == []


@pytest.mark.parametrize("fault", [503, 504, "accept_504", "drop", "drop_after"])
def test_unclear_answer_without_a_key_is_never_resent(fast_hook, graph_emulator, fault):
    graph_emulator.faults.add("send_mail", fault)
    with pytest.raises(OutcomeUnknownError, match="not sent again") as err:
        fast_hook.send_mail(note())
    assert "POST /users/" in str(err.value)
    assert len(sends(graph_emulator)) == 1


@pytest.mark.parametrize("fault", [503, 504, "accept_504", "drop", "drop_after", "slow"])
def test_unclear_answer_with_a_key_is_checked_then_sent_exactly_once(connect, graph_emulator, fault):
    hook = connect(extra={**FAST, "timeout": 1})
    graph_emulator.faults.add("send_mail", fault, delay=1.5)
    assert hook.send_mail(note(), idempotency_key="k-1") == "sent"
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == {"k-1": 1}
    lookups = [r["path"].split("/")[-2] for r in graph_emulator.inspect.request_log
               if r["method"] == "GET" and "/mailFolders/" in r["path"]]
    processed = fault in ("accept_504", "drop_after", "slow")
    assert lookups == (["sentitems"] if processed else ["sentitems", "outbox", "drafts"])
    if fault == "slow":  # the emulator logs the slow request once it has answered: wait for that (bounded)
        deadline = time.monotonic() + 30
        while not sends(graph_emulator) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(sends(graph_emulator)) == (1 if processed else 2)


def test_idempotent_reads_are_retried_on_5xx(fast_hook, graph_emulator):
    draft = fast_hook.create_draft(note())
    graph_emulator.faults.add("get_message", 503, times=2)
    assert fast_hook.get_message(draft["id"])["subject"] == "Report"


def test_check_first_skips_what_an_earlier_attempt_sent(fast_hook, graph_emulator):
    assert fast_hook.send_mail(note(), idempotency_key="run-1/0") == "sent"
    assert fast_hook.send_mail(note(), idempotency_key="run-1/0", check_first=True) == "already_sent"
    assert fast_hook.send_mail(note(), idempotency_key="run-1/1", check_first=True) == "sent"
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == {"run-1/0": 1, "run-1/1": 1}


def test_draft_path_send_is_checked_by_immutable_id(fast_hook, graph_emulator, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3_500_000))
    for key, fault in (("big-accepted", "accept_504"), ("big-refused", 503), ("big-dropped", "drop_after")):
        graph_emulator.faults.add("send_draft", fault)
        assert fast_hook.send_mail(note(attachments=[str(big)]), idempotency_key=key) == "sent"
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == {"big-accepted": 1, "big-refused": 1, "big-dropped": 1}
    assert graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts") == []
    assert len(sends(graph_emulator, "/send")) == 4  # only the refused one went twice


def test_draft_path_leftover_of_a_crashed_attempt_is_replaced(connect, graph_emulator, tmp_path):
    fast_hook = connect(extra={**FAST, "retry_max_wait": 1})  # the clean-up gives up within a second, not 15
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3_500_000))
    graph_emulator.faults.add("send_draft", 400)  # the first attempt dies before its send
    graph_emulator.faults.add("delete_message", 503, times=99)  # ... and cannot clean up
    with pytest.raises(GraphRequestError, match="400 BadRequest"):
        fast_hook.send_mail(note(attachments=[str(big)]), idempotency_key="crashed")
    assert len(graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts")) == 1
    graph_emulator.faults.clear()
    assert fast_hook.send_mail(note(attachments=[str(big)]), idempotency_key="crashed", check_first=True) == "sent"
    assert graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts") == []
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == {"crashed": 1}


@pytest.mark.parametrize("fault", ["drop_after", "accept_504", 503])
def test_draft_created_once_after_an_unclear_answer(fast_hook, graph_emulator, fault):
    graph_emulator.faults.add("create_message", fault)
    draft = fast_hook.create_draft(note(), idempotency_key="draft-1")
    (stored,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts")
    assert draft["id"] == stored["_immutableId"] and draft["webLink"]
    again = fast_hook.create_draft(note(subject="Report v2"), idempotency_key="draft-1", check_first=True)
    (stored,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts")
    assert stored["subject"] == "Report v2" and again["id"] == stored["_immutableId"]


def test_make_key_is_readable_and_bounded():
    assert make_key("dag", "task", "manual__2026-11-22T00:00:00+00:00", -1, 0) == \
        "dag/task/manual__2026-11-22T00:00:00+00:00/-1/0"
    long_one = make_key("d" * 300, 1)
    assert len(long_one) == 200 and long_one != make_key("d" * 300, 2)


@pytest.mark.parametrize("fault", ["accept_504", 503, "drop_after"])
def test_send_draft_by_id_is_sent_once(fast_hook, graph_emulator, fault):
    draft = fast_hook.create_draft(note())
    graph_emulator.faults.add("send_draft", fault)
    assert fast_hook.send_draft(draft["id"]) == "sent"
    assert fast_hook.send_draft(draft["id"], check_first=True) == "already_sent"  # a retried task
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1


def test_send_draft_check_first_still_names_a_wrong_id(fast_hook):
    from airflow_graph_mail import ItemNotFoundError

    with pytest.raises(ItemNotFoundError):
        fast_hook.send_draft("AAkALgNoSuchDraft", check_first=True)


def test_a_users_own_extended_property_is_kept_beside_the_key(fast_hook, graph_emulator):
    """Graph reads property names in any case: a user's SingleValueExtendedProperties stays beside the key."""
    mine = "String {00020329-0000-0000-C000-000000000046} Name ReportRun"
    fast_hook.send_mail({"Subject": "Run 7", "ToRecipients": [{"EmailAddress": {"Address": "ann@example.com"}}],
                         "SingleValueExtendedProperties": [{"Id": mine, "Value": "run-7"}]},
                        idempotency_key="run-7/0")
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == {"run-7/0": 1}
    assert graph_emulator.inspect.deliveries(mine) == {"run-7": 1}
