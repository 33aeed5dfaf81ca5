"""Operators and example DAGs run through Airflow (`airflow dags test`) against the emulator."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

from airflow_graph_mail.mail.idempotency import PROPERTY_ID, ref_for

DAGS = Path(__file__).parent / "dags"
sys.path.insert(0, str(DAGS))


def test_report_distribution_example(run_dag, graph_emulator):
    secret = "the-deployments-secret-key-0123"  # [api] secret_key, the same on every Airflow component
    result = run_dag("report_distribution", AIRFLOW__API__SECRET_KEY=secret)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for address in ("ann@example.com", "bob@example.com", "sales-leads@example.com"):
        (mail,) = graph_emulator.inspect.messages(address)
        assert mail["subject"] == "Daily sales report for 2026-11-20"
        assert "<td>North</td><td>128</td><td>15,360.50</td>" in mail["body"]["content"]
        assert mail["body"]["contentType"] == "html"
        files = graph_emulator.inspect.attachment_bytes(mail["id"])
        assert files["sales_2026-11-20.csv"].splitlines()[0] == b"region,orders,revenue"
        assert files["revenue_2026-11-20.png"].startswith(b"\x89PNG\r\n\x1a\n")
        assert 'src="cid:chart"' in mail["body"]["content"]
        (chart,) = [a for a in mail["attachments"] if a["isInline"]]
        assert chart["contentId"] == "chart" and chart["contentType"] == "image/png"
        # the user's header, then the keyed hash of the idempotency key that ties a bounce to this mail
        (sent,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
        (key,) = [p["value"] for p in sent["singleValueExtendedProperties"] if p["id"] == PROPERTY_ID]
        assert mail["internetMessageHeaders"] == [{"name": "x-report-id", "value": "sales-20261120"},
                                                  {"name": "x-airflow-graph-mail-ref", "value": ref_for(key, secret)}]


def test_draft_review_send_example(run_dag, graph_emulator):
    result = run_dag("draft_review_send")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (mail,) = graph_emulator.inspect.messages("board@example.com")
    assert mail["importance"] == "high"
    summary = b"Quarter: 2026-11-20\nRevenue: 1.2M\n"
    assert graph_emulator.inspect.attachment_bytes(mail["id"]) == {"summary.txt": summary}
    assert graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts") == []
    assert len(graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")) == 1


def test_operator_features(run_dag, graph_emulator, tmp_path):
    result = run_dag("graph_mail_features", DAGS, CASE_DIR=str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (mail,) = graph_emulator.inspect.messages("ann@example.com")
    assert mail["subject"] == "Note for Data on 2026-11-20"
    assert mail["body"]["contentType"] == "text"
    assert mail["body"]["content"].startswith("Hello Data,\nthe run ")
    assert mail["importance"] == "high"
    assert [r["emailAddress"]["address"] for r in mail["ccRecipients"]] == ["carol@example.com"]
    assert mail["replyTo"] == [{"emailAddress": {"address": "replies@example.com"}}]
    assert mail["internetMessageHeaders"][0]["name"] == "x-run-id"
    # A .txt attachment path is attached as it is on disk, never loaded as a Jinja template.
    assert graph_emulator.inspect.attachment_bytes(mail["id"]) == {
        "summary.txt": b"{{ not a template }} raw bytes\n", "inline-2026-11-20.txt": b"made on 2026-11-20"}
    assert len(graph_emulator.inspect.messages("hidden@example.com")) == 1
    sent = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
    assert "Note for Data on 2026-11-20" not in [m["subject"] for m in sent]  # save_to_sent_items=False
    assert "Draft 2026-11-20" in [m["subject"] for m in sent]
    (draft_copy,) = graph_emulator.inspect.messages("dave@example.com")
    assert draft_copy["body"]["contentType"] == "html"
    assert draft_copy["body"]["content"].strip() == "<p>Draft for <b>2026-11-20</b> from task make_draft</p>"
    # mail merge: rows from a CSV file, the body from a template file, row data never rendered as a template
    (zoe,) = graph_emulator.inspect.messages("zoe@example.com")
    assert zoe["subject"] == "Balance for zoe@example.com" and zoe["body"]["contentType"] == "html"
    assert "Your balance on 2026-11-20 is <b>12.50</b> (Data)." in zoe["body"]["content"]
    assert graph_emulator.inspect.messages("rehearsal0@example.com") == []  # check_only sends nothing
    (yan,) = graph_emulator.inspect.messages("yan@example.com")
    assert "<p>Dear {{ 7 * 7 }},</p>" in yan["body"]["content"]
    for index in (0, 1):  # a mapped task: body from its file, autoescaped, cid() available
        (copy,) = graph_emulator.inspect.messages(f"mapped{index}@example.com")
        assert copy["subject"] == f"Copy {index}"
        assert copy["body"]["content"].startswith(f"<p>Copy {index} for &lt;team&gt;, Data</p>")
        assert '<img src="cid:logo.png">' in copy["body"]["content"]


def test_bad_inputs_fail_before_any_request(run_dag, graph_emulator, airflow_home):
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
        "rows[2].to: 'c(at)example.com' is not a valid e-mail address",
        "rows[1].e: 'a@example.com' is also the key of rows[0] ('a@example.com')",
        "rows: cannot read '/nonexistent/rows-2026-11-20.csv'",
        "body: RenderTimeoutError: body: the template did not finish rendering within 2s",
        "rows[1].subject: the template did not finish rendering within 1s",
        "not retried: a retry cannot fix this",
    ):
        assert expected in output, expected
    assert graph_emulator.inspect.side_effect_requests == []
    assert graph_emulator.backend.delivery.sends == 0
    with sqlite3.connect(airflow_home / "airflow.db") as db:  # retries: 2, and none was used
        tries = db.execute("SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ?",
                           ("graph_mail_bad_inputs",)).fetchall()
    assert len(tries) == 11 and {(state, tried) for _, state, tried in tries} == {("failed", 1)}, tries


def test_large_attachments_through_both_operators(run_dag, graph_emulator, tmp_path):
    """0 B to 100 MB, alone and mixed with an inline image: every byte and name arrives (hash compared)."""
    import large_attachments as case

    graph_emulator.backend.set_limits(message_size_limit=150 * case.MB, upload_budget_bytes=4000 * case.MB)
    result = run_dag("graph_mail_large_attachments", DAGS, connection_extra={"max_message_size_mb": 150},
                     timeout=600, CASE_DIR=str(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    def digest(name: str) -> str:
        return hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()

    expected = {label: {case.file_name(label): digest(case.file_name(label))} for label in case.SIZES}
    expected["mixed"] = {case.file_name(label): digest(case.file_name(label)) for label in case.MIXED}
    expected["mixed"]["chart.png"] = digest("chart.png")
    sent = {m["subject"]: m for m in graph_emulator.inspect.messages("ann@example.com", with_content=False)}
    drafts = {m["subject"]: m for m in graph_emulator.inspect.messages(graph_emulator.default_sender, "drafts",
                                                               with_content=False)}
    for label, attachments in expected.items():
        for found in (sent[f"send {label}"], drafts[f"draft {label}"]):
            assert {a["name"]: a["sha256"] for a in found["attachments"]} == attachments, (found["subject"], label)
    for mixed in (sent["send mixed"], drafts["draft mixed"]):
        (image,) = [a for a in mixed["attachments"] if a["isInline"]]
        assert image["contentId"] == "chart" and 'src="cid:chart"' in mixed["body"]["content"]
    assert len(sent) == len(expected) and len(drafts) == len(expected)


def test_send_task_retried_after_dying_does_not_send_again(run_dag, graph_emulator):
    from airflow_graph_mail.mail.idempotency import PROPERTY_ID

    result = run_dag("send_retried", DAGS, connection_extra={"retry_backoff": 0.05})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "try 1: sent" in result.stdout + result.stderr
    assert "try 2: already_sent" in result.stdout + result.stderr
    (key,) = graph_emulator.inspect.deliveries(PROPERTY_ID)
    assert key.startswith("send_retried/send/") and key.endswith("/-1/0")
    assert graph_emulator.inspect.deliveries(PROPERTY_ID) == {key: 1}
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1


def test_mail_merge_retried_sends_only_the_missing(run_dag, graph_emulator):
    from airflow_graph_mail.mail.idempotency import PROPERTY_ID

    # The first try: 3 of 8 throttled for longer than the connection lets a send wait (transient: retried).
    graph_emulator.faults.add("send_mail", 429, times=3, retry_after=30)
    result = run_dag("merge_retried", DAGS, connection_extra={"retry_backoff": 0.05, "retry_max_wait": 1})
    logs = result.stdout + result.stderr
    assert result.returncode == 0, logs[-3000:]
    assert "3 of 8 message(s) not sent or not known to be sent" in logs
    sends = [r for r in graph_emulator.inspect.request_log if r["path"].endswith("/sendMail")]
    assert [r["status"] for r in sends].count(202) == 8 and len(sends) == 11  # 8 + 3 on the retry
    deliveries = graph_emulator.inspect.deliveries(PROPERTY_ID)
    assert len(deliveries) == 8 and set(deliveries.values()) == {1}
    statement = graph_emulator.inspect.messages("customer3@example.com")[0]
    assert statement["subject"] == "Statement for Customer 3 (2026-11-20)"
    csv = b"name,amount\nCustomer 3,103\n"
    assert graph_emulator.inspect.attachment_bytes(statement["id"]) == {"statement-103.csv": csv}
