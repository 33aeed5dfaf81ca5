"""Bounces: the emulator answers undeliverable recipients with Exchange's non-delivery reports, and
GraphBounceReportOperator ties each to the row it came from."""

from __future__ import annotations

import json
import sqlite3

import pytest
import requests

from airflow_graph_mail.mail.message import Message
from airflow_graph_mail.mail.ndr import NDR_FILTER, meaning, read_report, ref_for

BOUNCING = {"c07@example.com": "5.2.2", "c13@example.com": "5.1.1", "c19@example.com": "5.7.1"}


def xcom(tmp_path, task_id: str, key: str):
    with sqlite3.connect(tmp_path / "airflow" / "airflow.db") as db:
        (value,) = db.execute("SELECT value FROM xcom WHERE task_id = ? AND key = ?", (task_id, key)).fetchone()
    value = json.loads(value)
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.parametrize("share, fails", [("0.2", False), ("0.1", True)])
def test_a_merge_of_20_rows_of_which_3_bounce(run_dag, graph_emulator, tmp_path, share, fails):
    for address, status in BOUNCING.items():
        graph_emulator.bounce(address, status)
    graph_emulator.set_ndr_delay(0.5)
    result = run_dag("statements_bounce_report", BOUNCE_SETTLE_SECONDS="2", BOUNCE_FAIL_SHARE=share)
    out = result.stdout + result.stderr
    assert (result.returncode != 0) == fails, out[-4000:]
    assert "running trigger in line" in out  # the wait was deferred
    bounces = xcom(tmp_path, "bounce_report", "bounces")
    assert sorted((b["address"], b["status"], b["meaning"]) for b in bounces) == sorted(
        (address, status, meaning(status)) for address, status in BOUNCING.items())
    assert {b["position"] for b in bounces} == {6, 12, 18} and {b["task_id"] for b in bounces} == {"send_statements"}
    outcomes = xcom(tmp_path, "bounce_report", "outcomes")
    assert len(outcomes) == 20
    assert {o["to"][0]: [b["status"] for b in o["bounces"]] for o in outcomes if o["bounces"]} == {
        address: [status] for address, status in BOUNCING.items()}
    if fails:
        assert "3 of 20 mail(s) bounced (15%, above fail_on_bounce=0.1)" in out
    assert len(graph_emulator.messages("c01@example.com")) == 1 and graph_emulator.messages("c07@example.com") == []


def test_the_ndr_is_exchanges_shape(hook, graph_emulator):
    """Class REPORT.IPM.Note.NDR (found with Graph's $filter), multipart/report with a delivery-status part
    per recipient and the original's headers; an unknown address of an accepted domain bounces with 5.1.10."""
    graph_emulator.set_ndr_delay(0)
    graph_emulator.bounce("full@contoso.com", "5.2.2")
    ghost = f"ghost@{graph_emulator.tenant_domain}"
    hook.send_mail(Message(to=["ann@example.com", "full@contoso.com", ghost], subject="Numbers"),
                   idempotency_key="numbers-1")
    (ndr,) = hook.list_messages(folder="inbox", filter=NDR_FILTER)
    assert ndr["subject"] == "Undeliverable: Numbers"
    assert ndr["from"]["emailAddress"]["name"] == "Microsoft Outlook"
    mime = hook.get_mime(ndr["id"])
    assert b"multipart/report" in mime and b'report-type="delivery-status"' in mime
    report = read_report(mime)
    assert [(b.address, b.status) for b in report.bounces] == [("full@contoso.com", "5.2.2"), (ghost, "5.1.10")]
    assert "RESOLVER.ADR.RecipientNotFound" in report.bounces[1].diagnostic
    assert report.ref == ref_for("numbers-1") and report.original_subject == "Numbers"
    (sent,) = graph_emulator.messages(graph_emulator.default_sender, "sentitems")
    assert report.original_message_id == sent["internetMessageId"]
    assert len(graph_emulator.messages("ann@example.com")) == 1 and graph_emulator.messages(ghost) == []
    assert graph_emulator.messages("full@contoso.com") == []


def test_an_ndr_arrives_after_its_delay(hook, graph_emulator):
    import time

    graph_emulator.set_ndr_delay(0.6)
    graph_emulator.bounce("*@gone.example", "5.1.1")
    hook.send_mail(Message(to="x@gone.example", subject="Late"))
    assert list(hook.list_messages(folder="inbox", filter=NDR_FILTER)) == []
    time.sleep(1.0)
    assert [m["subject"] for m in hook.list_messages(folder="inbox", filter=NDR_FILTER)] == ["Undeliverable: Late"]


def test_read_report_reads_a_report_written_by_hand():
    """RFC 3464's shape written out by hand (not by our emulator): a delayed and a failed recipient, the
    original attached as message/rfc822."""
    raw = (b"From: postmaster@mx.example\r\nTo: airflow@contoso.com\r\nSubject: Undeliverable: Q3\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b1\r\n\r\n"
           b"--b1\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
           b"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;mx.example\r\n\r\n"
           b"Final-Recipient: rfc822; late@remote.example\r\nAction: delayed\r\nStatus: 4.4.7\r\n\r\n"
           b"Final-Recipient: RFC822; Full@Remote.example\r\nAction: failed\r\nStatus: 5.2.2\r\n"
           b"Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n\r\n"
           b"--b1\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <q3@contoso.com>\r\nSubject: Q3\r\n"
           b"X-Airflow-Graph-Mail-Ref: abc\r\n\r\nbody\r\n--b1--\r\n")
    report = read_report(raw)
    assert [(b.address, b.status, b.meaning) for b in report.bounces] == [
        ("Full@Remote.example", "5.2.2", "recipient's mailbox is full")]
    assert (report.original_message_id, report.ref, report.original_subject) == ("<q3@contoso.com>", "abc", "Q3")
    assert read_report(b"Subject: hello\r\n\r\nnot a report") is None
    assert meaning("5.3.99") == "permanent failure (recipient's mail system)"


def test_the_viewer_links_an_ndr_and_its_original(hook, graph_emulator):
    graph_emulator.set_ndr_delay(0)
    graph_emulator.bounce("full@contoso.com", "5.2.2")
    hook.send_mail(Message(to="full@contoso.com", subject="Linked"), idempotency_key="linked")
    (ndr,) = graph_emulator.messages(graph_emulator.default_sender)
    (sent,) = graph_emulator.messages(graph_emulator.default_sender, "sentitems")

    def page(message_id):
        return requests.get(f"{graph_emulator.base_url}/_viewer/messages/{message_id}", verify=graph_emulator.ca_path,
                            timeout=10).text

    assert f'href="/_viewer/messages/{sent["id"]}">Linked</a>' in page(ndr["id"])
    assert f'href="/_viewer/messages/{ndr["id"]}">Undeliverable: Linked</a>' in page(sent["id"])


def test_value_move_and_folders_as_graph_answers_them(hook, graph_emulator):
    draft = hook.create_draft(Message(to="ann@example.com", subject="Moved"))
    mime = hook.get_mime(draft["id"])
    assert b"Subject: Moved" in mime
    deleted = hook.client.folder_id("deleteditems")
    client, call = hook.client, hook.client.call(None)
    moved = client.transport.request(call, "POST", call.message_path(draft["id"]) + "/move",
                                     json_body={"destinationId": "deleteditems"}, expect=(201,)).json()
    assert moved["id"] == draft["id"]  # asked for immutable ids: it stays
    assert moved["parentFolderId"] == deleted
    assert hook.get_message(draft["id"], select=("isDraft",))["isDraft"] is True


def test_bounce_report_options_are_checked_when_the_dag_is_parsed():
    from airflow_graph_mail.errors import GraphConfigError
    from airflow_graph_mail.operators.bounce_report import GraphBounceReportOperator

    with pytest.raises(GraphConfigError, match="fail_on_bounce: 2 is not True, False or a share"):
        GraphBounceReportOperator(task_id="b", sent_by="x", fail_on_bounce=2)
    with pytest.raises(GraphConfigError, match="settle: must not be negative"):
        GraphBounceReportOperator(task_id="b", sent_by="x", settle=-1)
