"""Alerts through Graph: the [email] backend as Airflow calls it, and GraphMailNotifier in a failing DAG."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import make_certificate, secrets_in

from airflow_graph_mail.email_backend import send_email
from airflow_graph_mail.errors import MessageValidationError


@pytest.fixture
def default_connection(graph_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_DEFAULT", json.dumps(graph_emulator.connection()))


def inbox(emulator, address):
    return emulator.messages(address, with_content=False)


def test_backend_as_airflow_2_calls_it(graph_emulator, default_connection, tmp_path):
    """airflow.utils.email.send_email: `to` joined with commas, every keyword, conn_id from [email]."""
    report = tmp_path / "errors.csv"
    report.write_bytes(b"task,error\nload,timeout\n")
    send_email("ann@example.com, bob@example.com", "Airflow alert: load failed", "<p>Try 1 out of 2</p>",
               files=[str(report)], dryrun=False, cc="lead@example.com; ops@example.com", bcc=["audit@example.com"],
               mime_subtype="mixed", mime_charset="utf-8", conn_id="smtp_default",
               from_email="airflow@airflow", custom_headers={"X-Alert-Id": "42"})
    (mail,) = inbox(graph_emulator, "bob@example.com")
    assert mail["subject"] == "Airflow alert: load failed"
    assert [r["emailAddress"]["address"] for r in mail["ccRecipients"]] == ["lead@example.com", "ops@example.com"]
    assert graph_emulator.attachment_bytes(mail["id"]) == {"errors.csv": b"task,error\nload,timeout\n"}
    assert mail["from"]["emailAddress"]["address"] == graph_emulator.default_sender  # the placeholder is not a mailbox
    assert len(inbox(graph_emulator, "audit@example.com")) == 1
    full = graph_emulator.full_message(mail["id"])
    assert {"name": "x-alert-id", "value": "42"} in [{"name": h["name"].lower(), "value": h["value"]}
                                                      for h in full.get("internetMessageHeaders", [])]


def test_backend_as_airflow_3_calls_it(graph_emulator, monkeypatch):
    """Airflow 3's legacy-backend notifier: `to` as the task's list, conn_id and from_email by keyword."""
    graph_emulator.add_user("alerts@contoso.com", "Alerts")
    connection = graph_emulator.connection()
    connection["extra"]["sender"] = None
    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_ALERTS", json.dumps(connection))
    send_email(["oncall@example.com"], "Airflow alert: <TaskInstance: x>", "Try 1 out of 1",
               conn_id="graph_mail_alerts", from_email="Airflow Alerts <alerts@contoso.com>")
    (mail,) = inbox(graph_emulator, "oncall@example.com")
    assert mail["from"]["emailAddress"]["address"] == "alerts@contoso.com"
    assert len(graph_emulator.messages("alerts@contoso.com", "sentitems", with_content=False)) == 1


def test_backend_standard_headers_go_as_mime(graph_emulator, default_connection):
    send_email("ann@example.com", "auto", "<p>automated</p>",
               custom_headers={"Auto-Submitted": "auto-generated", "Reply-To": "noreply@example.com",
                               "X-Run": "r1"})
    (mail,) = inbox(graph_emulator, "ann@example.com")
    eml = graph_emulator.eml(mail["id"]).decode()
    assert "Auto-Submitted: auto-generated" in eml and "X-Run: r1" in eml
    assert [r["emailAddress"]["address"] for r in mail["replyTo"]] == ["noreply@example.com"]


def test_backend_dryrun_and_bad_input_send_nothing(graph_emulator, default_connection):
    send_email("ann@example.com", "not really", "<p>x</p>", dryrun=True)
    with pytest.raises(MessageValidationError, match="to: 'nobody@' is not a valid e-mail address"):
        send_email("ann@example.com, nobody@", "bad", "<p>x</p>")
    with pytest.raises(MessageValidationError, match=r"custom_headers\[Auto-Submitted\].*line break"):
        send_email("ann@example.com", "bad", "<p>x</p>", custom_headers={"Auto-Submitted": "a\r\nBcc: x@y.z"})
    assert graph_emulator.side_effect_requests == []



@pytest.mark.parametrize("default_credential", ["certificate", "refresh_token"])
def test_failed_task_alerts_through_graph_both_ways_and_logs_hold_no_secret(
        run_dag, graph_emulator, tmp_path, default_credential):
    """The failure_alerts example: the task fails; its GraphMailNotifier callback and Airflow's own alert
    e-mail (email_backend = ours, through a second, client-secret connection) both arrive."""
    secret_connection = graph_emulator.connection()
    client_secret = secret_connection["password"]
    sender = graph_emulator.default_sender
    if default_credential == "certificate":
        bundle, cert = make_certificate(passphrase=b"pem-pass-7Q")
        app = graph_emulator.add_app(certificate_pem=cert)
        default = {**secret_connection, "login": app.client_id, "password": None,
                   "extra": {**secret_connection["extra"], "certificate_private_key": bundle.decode(),
                             "certificate_passphrase": "pem-pass-7Q"}}
        key_lines = [line for line in bundle.decode().splitlines() if line and not line.startswith("-----")]
        secrets = {"private key": key_lines[1], "passphrase": "pem-pass-7Q"}
        notifier_from = sender
    else:
        graph_emulator.add_user("oncall-bot@contoso.com", "On-call bot")
        app = graph_emulator.add_app(public_client=True)
        refresh_token = graph_emulator.issue_refresh_token("oncall-bot@contoso.com", app)
        default = {**secret_connection, "login": app.client_id, "password": None,
                   "extra": {**secret_connection["extra"], "refresh_token": refresh_token, "sender": None}}
        secrets = {"refresh token": refresh_token}
        notifier_from = "oncall-bot@contoso.com"
    result = run_dag("failure_alerts", connection=default,
                     AIRFLOW__EMAIL__EMAIL_BACKEND="airflow_graph_mail.email_backend.send_email",
                     AIRFLOW__EMAIL__EMAIL_CONN_ID="graph_mail_alerts",
                     AIRFLOW__EMAIL__FROM_EMAIL=f"Airflow <{sender}>",
                     AIRFLOW_CONN_GRAPH_MAIL_ALERTS=json.dumps(secret_connection))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "sales table is 26 hours old" in output, output[-3000:]

    mails = {m["subject"]: m for m in graph_emulator.messages("oncall@example.com")}
    notified = mails.pop("[Airflow] failure_alerts.check_freshness failed (try 1 of 1)")
    body = notified["body"]["content"]
    assert "sales table is 26 hours old (limit: 24) &lt;check the loader&gt;" in body
    assert re.search(r'<a href="http[^"]*(check_freshness|failure_alerts)[^"]*">Open the log</a>', body), body
    assert notified["from"]["emailAddress"]["address"] == notifier_from
    assert {"name": "X-Alert-Source", "value": "airflow"} in notified["internetMessageHeaders"]

    # The DAG's on_failure_callback: `airflow dags test` runs it too, on Airflow 2.11 and 3.x (on 3.x it gets a
    # serialized DAG, which has no template environment of its own).
    (dag_alert,) = [m for s, m in mails.items() if s.startswith("[Airflow] DAG failure_alerts failed: ")]
    assert "<tr><th align=\"left\">Reason</th><td>task_failure</td></tr>" in dag_alert["body"]["content"]
    assert [r["emailAddress"]["address"] for r in dag_alert["ccRecipients"]] == ["data-owners@example.com"]
    (alert,) = [m for s, m in mails.items() if s.startswith("Airflow alert:")]  # Airflow's own alert e-mail
    assert "check_freshness" in alert["subject"]
    assert re.search(r"Try 1 out of 1", alert["body"]["content"]) and "26 hours old" in alert["body"]["content"]
    assert alert["from"]["emailAddress"]["address"] == sender

    logs = output + "".join(p.read_text(errors="replace") for p in (tmp_path / "airflow").rglob("*.log"))
    secrets.update({"client secret": client_secret})
    secrets.update({f"access token {i}": token for i, token in enumerate(graph_emulator.issuer.issued)})
    rotated = [t for t, g in graph_emulator.directory.refresh_tokens.items() if g.client_id == app.client_id]
    secrets.update({f"rotated refresh token {i}": token for i, token in enumerate(rotated)})
    assert graph_emulator.issuer.issued and secrets_in(logs, secrets) == []
    assert "Bearer " not in logs


def test_dag_failure_callback_as_the_dag_processor_runs_it(graph_emulator, default_connection):
    """In a deployment the DAG processor runs DAG-level callbacks, with this code path."""
    pytest.importorskip("airflow.sdk", reason="Airflow 2 runs DAG callbacks in the scheduler, not in-process here")
    import structlog
    from airflow.callbacks.callback_requests import DagCallbackRequest
    from airflow.dag_processing.processor import _execute_dag_callbacks
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(Path(__file__).parent.parent / "example_dags" / "failure_alerts.py"))
    request = DagCallbackRequest(filepath="failure_alerts.py", bundle_name="dags-folder", bundle_version=None,
                                 dag_id="failure_alerts", run_id="scheduled__2026-11-20T00:00:00+00:00",
                                 msg="task_failure", is_failure_callback=True)
    _execute_dag_callbacks(dagbag, request, structlog.get_logger())
    (mail,) = graph_emulator.messages("data-owners@example.com")
    assert mail["subject"] == "[Airflow] DAG failure_alerts failed: scheduled__2026-11-20T00:00:00+00:00"
    assert "<tr><th align=\"left\">Reason</th><td>task_failure</td></tr>" in mail["body"]["content"]
    assert [r["emailAddress"]["address"] for r in mail["toRecipients"]] == ["oncall@example.com"]


def test_notifier_awaited_as_a_deadline_alert_is(graph_emulator, default_connection):
    """Airflow 3.1+ deadline alerts: the notifier gets the context up front and is awaited in the triggerer."""
    import asyncio

    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    pytest.importorskip("airflow.sdk", reason="deadline alerts exist from Airflow 3.1")
    notifier = GraphMailNotifier(to="oncall@example.com", subject="Deadline missed: {{ run_id }}",
                                 html_content="<p>{{ run_id }} was not done by {{ deadline }}</p>",
                                 context={"run_id": "daily__2026-11-20", "deadline": "06:00 UTC"})

    async def trigger():
        await notifier

    asyncio.run(trigger())
    (mail,) = graph_emulator.messages("oncall@example.com")
    assert mail["subject"] == "Deadline missed: daily__2026-11-20"
    assert mail["body"]["content"] == "<p>daily__2026-11-20 was not done by 06:00 UTC</p>"


def failure_context(task_id: str, error: str) -> dict:
    """The context Airflow hands a task's on_failure_callback (the fields the default template reads)."""
    from types import SimpleNamespace

    ti = SimpleNamespace(dag_id="nightly", task_id=task_id, try_number=1, max_tries=0, map_index=-1,
                         hostname="worker-1", log_url=f"http://airflow/log/{task_id}")
    return {"ti": ti, "run_id": "scheduled__2026-11-20", "logical_date": "2026-11-20", "exception": error}


def test_one_notifier_for_many_failures_sends_each_its_own_alert(graph_emulator, default_connection):
    """A notifier in default_args serves every task: each alert has its own text, and an exception that
    looks like a template is shown as written, never rendered."""
    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    notifier = GraphMailNotifier(to="oncall@example.com")
    notifier(failure_context("extract", "disk full"))
    notifier(failure_context("load", "bad row {{ 7 * 7 }}"))
    mails = {m["subject"]: m["body"]["content"] for m in graph_emulator.messages("oncall@example.com")}
    assert set(mails) == {"[Airflow] nightly.extract failed (try 1 of 1)", "[Airflow] nightly.load failed (try 1 of 1)"}
    assert "disk full" in mails["[Airflow] nightly.extract failed (try 1 of 1)"]
    assert "bad row {{ 7 * 7 }}" in mails["[Airflow] nightly.load failed (try 1 of 1)"]
    assert notifier.subject is None and notifier.html_content is None  # the notifier is as it was built


@pytest.mark.parametrize("path", ["backend", "notifier"])
def test_idn_addresses_go_through_the_mime_path(graph_emulator, default_connection, path):
    """A non-x- header sends MIME; an internationalized domain is written as its A-labels (RFC 5890)."""
    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    to, headers = "Jürgen Müller <jm@bücher.example>", {"Auto-Submitted": "auto-generated"}
    if path == "backend":
        send_email(to, "Bücher", "<p>x</p>", custom_headers=headers)
    else:
        GraphMailNotifier(to=to, subject="Bücher", html_content="<p>x</p>", custom_headers=headers).notify({})
    (mail,) = graph_emulator.messages("jm@xn--bcher-kva.example")
    assert mail["subject"] == "Bücher"
    assert mail["toRecipients"] == [{"emailAddress": {"name": "Jürgen Müller", "address": "jm@xn--bcher-kva.example"}}]
