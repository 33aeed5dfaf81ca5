"""Operators and example DAGs run through Airflow (`airflow dags test`) against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

DAGS = Path(__file__).parent / "dags"


def test_report_distribution_example(run_dag, graph_emulator):
    result = run_dag("report_distribution")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for address in ("ann@example.com", "bob@example.com", "sales-leads@example.com"):
        (mail,) = graph_emulator.messages(address)
        assert mail["subject"] == "Daily sales report for 2026-11-20"
        assert "<td>North</td><td>128</td><td>15,360.50</td>" in mail["body"]["content"]
        assert mail["body"]["contentType"] == "html"
        csv = graph_emulator.attachment_bytes(mail["id"])["sales_2026-11-20.csv"]
        assert csv.splitlines()[0] == b"region,orders,revenue"
        assert mail["internetMessageHeaders"] == [{"name": "x-report-id", "value": "sales-20261120"}]


def test_draft_review_send_example(run_dag, graph_emulator):
    result = run_dag("draft_review_send")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (mail,) = graph_emulator.messages("board@example.com")
    assert mail["importance"] == "high"
    assert graph_emulator.attachment_bytes(mail["id"]) == {"summary.txt": b"Quarter: 2026-11-20\nRevenue: 1.2M"}
    assert graph_emulator.messages(graph_emulator.default_sender, "drafts") == []
    assert len(graph_emulator.messages(graph_emulator.default_sender, "sentitems")) == 1


def test_operator_features(run_dag, graph_emulator, tmp_path):
    result = run_dag("graph_mail_features", DAGS, CASE_DIR=str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (mail,) = graph_emulator.messages("ann@example.com")
    assert mail["subject"] == "Note for Data on 2026-11-20"
    assert mail["body"]["contentType"] == "text"
    assert mail["body"]["content"].startswith("Hello Data,\nthe run ")
    assert mail["importance"] == "high"
    assert [r["emailAddress"]["address"] for r in mail["ccRecipients"]] == ["carol@example.com"]
    assert mail["replyTo"] == [{"emailAddress": {"address": "replies@example.com"}}]
    assert mail["internetMessageHeaders"][0]["name"] == "x-run-id"
    # A .txt attachment path is attached as it is on disk, never loaded as a Jinja template.
    assert graph_emulator.attachment_bytes(mail["id"]) == {
        "summary.txt": b"{{ not a template }} raw bytes\n", "inline-2026-11-20.txt": b"made on 2026-11-20"}
    assert len(graph_emulator.messages("hidden@example.com")) == 1
    sent = graph_emulator.messages(graph_emulator.default_sender, "sentitems")
    assert [m["subject"] for m in sent] == ["Draft 2026-11-20"]  # save_to_sent_items=False kept no copy
    (draft_copy,) = graph_emulator.messages("dave@example.com")
    assert draft_copy["body"]["contentType"] == "html"
    assert draft_copy["body"]["content"].strip() == "<p>Draft for <b>2026-11-20</b> from task make_draft</p>"


def test_bad_inputs_fail_before_any_request(run_dag, graph_emulator, tmp_path):
    broken = graph_emulator.connection()
    broken["extra"].pop("tenant_id")
    result = run_dag("graph_mail_bad_inputs", DAGS, AIRFLOW_CONN_GRAPH_MAIL_BROKEN=json.dumps(broken))
    output = result.stdout + result.stderr
    for expected in (
        "to: no recipients: give at least one address in to, cc or bcc",
        "to: 'bob(at)example.com' is not a valid e-mail address",
        "attachments: file not found: /nonexistent/report-2026-11-20.csv",
        "'customer_name' is undefined",
        "no_such_template.html",
        "connection 'graph_mail_broken': extra 'tenant_id' is empty",
    ):
        assert expected in output, expected
    assert graph_emulator.side_effect_requests == []
    assert graph_emulator.sends == 0
