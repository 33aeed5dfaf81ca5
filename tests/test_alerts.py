"""Alerts through Graph: the [email] backend as Airflow calls it, and GraphMailNotifier in a failing DAG."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import as_context, make_certificate, secrets_in

from airflow_graph_mail import MessageValidationError
from airflow_graph_mail.email_backend import send_email


@pytest.fixture
def default_connection(graph_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_DEFAULT", json.dumps(graph_emulator.connection()))


def inbox(emulator, address):
    return emulator.inspect.messages(address, with_content=False)


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
    assert graph_emulator.inspect.attachment_bytes(mail["id"]) == {"errors.csv": b"task,error\nload,timeout\n"}
    assert mail["from"]["emailAddress"]["address"] == graph_emulator.default_sender  # the placeholder is not a mailbox
    assert len(inbox(graph_emulator, "audit@example.com")) == 1
    full = graph_emulator.inspect.full_message(mail["id"])
    assert {"name": "x-alert-id", "value": "42"} in [{"name": h["name"].lower(), "value": h["value"]}
                                                      for h in full.get("internetMessageHeaders", [])]


def test_backend_as_airflow_3_calls_it(graph_emulator, monkeypatch):
    """Airflow 3's legacy-backend notifier: `to` as the task's list, conn_id and from_email by keyword."""
    graph_emulator.backend.store.add_user("alerts@contoso.com", "Alerts")
    connection = graph_emulator.connection()
    connection["extra"]["sender"] = None
    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_ALERTS", json.dumps(connection))
    send_email(["oncall@example.com"], "Airflow alert: <TaskInstance: x>", "Try 1 out of 1",
               conn_id="graph_mail_alerts", from_email="Airflow Alerts <alerts@contoso.com>")
    (mail,) = inbox(graph_emulator, "oncall@example.com")
    assert mail["from"]["emailAddress"]["address"] == "alerts@contoso.com"
    assert len(graph_emulator.inspect.messages("alerts@contoso.com", "sentitems", with_content=False)) == 1


def test_backend_standard_headers_go_as_mime(graph_emulator, default_connection):
    send_email("ann@example.com", "auto", "<p>automated</p>",
               custom_headers={"Auto-Submitted": "auto-generated", "Reply-To": "noreply@example.com",
                               "X-Run": "r1"})
    (mail,) = inbox(graph_emulator, "ann@example.com")
    eml = graph_emulator.inspect.eml(mail["id"]).decode()
    assert "Auto-Submitted: auto-generated" in eml and "X-Run: r1" in eml
    assert [r["emailAddress"]["address"] for r in mail["replyTo"]] == ["noreply@example.com"]


def test_backend_dryrun_and_bad_input_send_nothing(graph_emulator, default_connection):
    send_email("ann@example.com", "not really", "<p>x</p>", dryrun=True)
    with pytest.raises(MessageValidationError, match="to: 'nobody@' is not a valid e-mail address"):
        send_email("ann@example.com, nobody@", "bad", "<p>x</p>")
    with pytest.raises(MessageValidationError, match=r"custom_headers\[Auto-Submitted\].*line break"):
        send_email("ann@example.com", "bad", "<p>x</p>", custom_headers={"Auto-Submitted": "a\r\nBcc: x@y.z"})
    assert graph_emulator.inspect.side_effect_requests == []



@pytest.mark.parametrize("default_credential", ["certificate", "refresh_token"])
def test_failed_task_alerts_through_graph_both_ways_and_logs_hold_no_secret(
        run_dag, graph_emulator, airflow_home, default_credential):
    """The failure_alerts example: the task fails; its GraphMailNotifier callback and Airflow's own alert
    e-mail (email_backend = ours, through a second, client-secret connection) both arrive."""
    secret_connection = graph_emulator.connection()
    client_secret = secret_connection["password"]
    sender = graph_emulator.default_sender
    if default_credential == "certificate":
        bundle, cert = make_certificate(passphrase=b"pem-pass-7Q")
        app = graph_emulator.entra.add_app(certificate_pem=cert)
        default = {**secret_connection, "login": app.client_id, "password": None,
                   "extra": {**secret_connection["extra"], "certificate_private_key": bundle.decode(),
                             "certificate_passphrase": "pem-pass-7Q"}}
        key_lines = [line for line in bundle.decode().splitlines() if line and not line.startswith("-----")]
        secrets = {"private key": key_lines[1], "passphrase": "pem-pass-7Q"}
        notifier_from = sender
    else:
        graph_emulator.backend.store.add_user("oncall-bot@contoso.com", "On-call bot")
        app = graph_emulator.entra.add_app(public_client=True)
        refresh_token = graph_emulator.entra.issue_refresh_token("oncall-bot@contoso.com", app)
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

    mails = {m["subject"]: m for m in graph_emulator.inspect.messages("oncall@example.com")}
    notified = mails.pop("[Airflow] failure_alerts.check_freshness failed (try 1 of 1)")
    body = notified["body"]["content"]
    if dags_test_passes_the_exception():
        assert "sales table is 26 hours old (limit: 24) &lt;check the loader&gt;" in body
    else:
        assert "The exception is in the task's log." in body
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

    logs = output + "".join(p.read_text(errors="replace") for p in airflow_home.rglob("*.log"))
    secrets.update({"client secret": client_secret})
    secrets.update({f"access token {i}": token for i, token in enumerate(graph_emulator.entra.issuer.issued)})
    rotated = [t for t, g in graph_emulator.entra.directory.refresh_tokens.items() if g.client_id == app.client_id]
    secrets.update({f"rotated refresh token {i}": token for i, token in enumerate(rotated)})
    assert graph_emulator.entra.issuer.issued and secrets_in(logs, secrets) == []
    assert "Bearer " not in logs


def dags_test_passes_the_exception() -> bool:
    """Whether `airflow dags test` gives a task's failure callback the exception: Airflow 2.11 and 3.3+ do;
    3.0 to 3.2 run the task in process through a supervisor that never puts it in the context."""
    from airflow import __version__
    from packaging.version import Version

    return not Version("3.0") <= Version(__version__) < Version("3.3")


def test_dag_failure_callback_as_the_dag_processor_runs_it(graph_emulator, default_connection):
    """In a deployment the DAG processor runs DAG-level callbacks, with this code path."""
    pytest.importorskip("airflow.sdk", reason="Airflow 2 runs DAG callbacks in the scheduler, not in-process here")
    import structlog
    from airflow.callbacks.callback_requests import DagCallbackRequest
    from airflow.dag_processing.processor import _execute_dag_callbacks
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0, 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    dagbag = DagBag(dag_folder=str(Path(__file__).parent.parent / "example_dags" / "failure_alerts.py"))
    request = DagCallbackRequest(filepath="failure_alerts.py", bundle_name="dags-folder", bundle_version=None,
                                 dag_id="failure_alerts", run_id="scheduled__2026-11-20T00:00:00+00:00",
                                 msg="task_failure", is_failure_callback=True)
    _execute_dag_callbacks(dagbag, request, structlog.get_logger())
    (mail,) = graph_emulator.inspect.messages("data-owners@example.com")
    assert mail["subject"] == "[Airflow] DAG failure_alerts failed: scheduled__2026-11-20T00:00:00+00:00"
    assert "<tr><th align=\"left\">Reason</th><td>task_failure</td></tr>" in mail["body"]["content"]
    assert [r["emailAddress"]["address"] for r in mail["toRecipients"]] == ["oncall@example.com"]


def test_notifier_awaited_as_a_deadline_alert_is(graph_emulator, default_connection):
    """Airflow 3.1+ deadline alerts: the notifier gets the context up front and is awaited in the triggerer."""
    import asyncio

    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    pytest.importorskip("airflow.sdk.definitions.deadline", reason="deadline alerts exist from Airflow 3.1")
    notifier = GraphMailNotifier(to="oncall@example.com", subject="Deadline missed: {{ run_id }}",
                                 html_content="<p>{{ run_id }} was not done by {{ deadline }}</p>",
                                 context=as_context({"run_id": "daily__2026-11-20", "deadline": "06:00 UTC"}))

    async def trigger():
        await notifier

    asyncio.run(trigger())
    (mail,) = graph_emulator.inspect.messages("oncall@example.com")
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
    mails = {m["subject"]: m["body"]["content"] for m in graph_emulator.inspect.messages("oncall@example.com")}
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
    (mail,) = graph_emulator.inspect.messages("jm@xn--bcher-kva.example")
    assert mail["subject"] == "Bücher"
    assert mail["toRecipients"] == [{"emailAddress": {"name": "Jürgen Müller", "address": "jm@xn--bcher-kva.example"}}]


@pytest.mark.parametrize("missing", ["exception", "log_url"])
def test_task_alert_when_the_context_lacks_what_some_airflow_leaves_out(graph_emulator, default_connection,
                                                                       missing):
    """`airflow dags test` on Airflow 3.0 to 3.2 runs a task's on_failure_callback without "exception" in the
    context (only the worker's path sets it), and Airflow 3.0's task instances have no log URL: the alert
    still goes, says where the exception is, and links no log it does not have."""
    from airflow.providers.common.compat.sdk import DAG

    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    with DAG("nightly", schedule=None) as dag:  # its environment, as in a run: an undefined name is an error
        pass
    context = {**failure_context("load", "disk full"), "dag": dag}
    if missing == "exception":
        del context["exception"]
    else:
        del context["ti"].log_url
    GraphMailNotifier(to="oncall@example.com").notify(as_context(context))
    (mail,) = graph_emulator.inspect.messages("oncall@example.com")
    assert mail["subject"] == "[Airflow] nightly.load failed (try 1 of 1)"
    body = mail["body"]["content"]
    if missing == "exception":
        assert "The exception is in the task's log." in body
        assert '<a href="http://airflow/log/load">Open the log</a>' in body
    else:
        assert "disk full" in body and "Open the log" not in body


def test_the_connection_type_is_a_uri_scheme_airflow_does_not_warn_about(caplog):
    """Airflow writes every connection it looks up as a URI (its secrets cache; `connections add` and
    `get` print it) and warns when the type holds '_', which RFC 3986 forbids in a scheme: so the type
    has none, nor '-' (which Airflow reads back as '_'), and survives the round trip."""
    import logging

    from airflow.models.connection import Connection

    from airflow_graph_mail.get_provider_info import get_provider_info
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    (declared,) = get_provider_info()["connection-types"]
    assert declared["connection-type"] == GraphMailHook.conn_type
    assert re.fullmatch(r"[a-z][a-z0-9]*", GraphMailHook.conn_type), GraphMailHook.conn_type
    caplog.set_level(logging.WARNING)
    uri = Connection(conn_id="graph_mail_default", conn_type=GraphMailHook.conn_type, login="app",
                     password="secret", extra=json.dumps({"tenant_id": "contoso"})).get_uri()
    assert "shall not contain" not in caplog.text
    assert Connection(conn_id="graph_mail_default", uri=uri).conn_type == GraphMailHook.conn_type


def stored_connection(graph_emulator) -> dict:
    """The emulator's connection as `airflow connections add --conn-json` stores it, typed as the hook is."""
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    return {**graph_emulator.connection(), "conn_type": GraphMailHook.conn_type}


@pytest.fixture
def stored_home(airflow_home, warm_airflow, graph_emulator, tmp_path):
    """An Airflow home whose graph_mail_default is in the metadata database (`airflow connections add`, as
    README sets it up) and nowhere in the environment; [email] email_backend is ours."""
    from airflow_env import airflow_env, store_connection

    env = airflow_env(airflow_home, None, AIRFLOW__EMAIL__EMAIL_BACKEND="airflow_graph_mail.email_backend.send_email",
                      REPORT_OUTPUT_DIR=str(tmp_path / "reports"))
    added = store_connection(env, "graph_mail_default", stored_connection(graph_emulator), runner=warm_airflow)
    assert "shall not contain" not in added  # `connections add` prints the URI
    return env


def test_every_alert_with_the_connection_stored_in_the_metadata_db(graph_emulator, stored_home, dags_test):
    """README's path, under `airflow dags test`: the task's notifier and Airflow's own alert e-mail run in the
    task (the connection comes through the task's supervisor), the DAG's notifier runs in the `dags test`
    process itself, which Airflow 3.1+ gives only the environment and secrets backends."""
    result = dags_test("failure_alerts", stored_home)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "sales table is 26 hours old" in output, output[-3000:]
    subjects = [m["subject"] for m in graph_emulator.inspect.messages("oncall@example.com", with_content=False)]
    assert "[Airflow] failure_alerts.check_freshness failed (try 1 of 1)" in subjects, output[-3000:]
    assert [s for s in subjects if s.startswith("[Airflow] DAG failure_alerts failed: ")], output[-3000:]
    assert [s for s in subjects if s.startswith("Airflow alert:")], output[-3000:]  # email_on_failure
    assert len(subjects) == 3, subjects
    assert "`graph_mail_default` isn't defined" not in output and "shall not contain" not in output


def test_dag_alert_run_by_the_dag_processor_with_a_stored_connection(graph_emulator, stored_home, tmp_path):
    """Where a deployment runs a DAG's failure callback: the scheduler hands it to the DAG processor through
    the metadata database, and the processor runs it (Airflow 3: in a parsing process that asks its parent
    for connections; Airflow 2.11: in a DagFileProcessor that reads the database)."""
    import shutil

    from airflow_env import ROOT, dag_processor_callback

    from airflow_graph_mail.notifications.email_alerts import ignores_email_backend, task_sdk_version

    dags = tmp_path / "dags"  # this DAG alone: the processor parses its folder twice
    dags.mkdir()
    dag_file = Path(shutil.copy(ROOT / "example_dags" / "failure_alerts.py", dags))
    run_id = "scheduled__2026-11-20T00:00:00+00:00"
    result = dag_processor_callback({**stored_home, "AIRFLOW__CORE__DAGS_FOLDER": str(dags)}, "failure_alerts",
                                    run_id, dag_file)
    logs = result.stdout + result.stderr + "".join(
        p.read_text(errors="replace") for p in Path(stored_home["AIRFLOW_HOME"]).rglob("*.log"))
    assert result.returncode == 0, logs[-3000:]
    (mail,) = graph_emulator.inspect.messages("data-owners@example.com")
    assert mail["subject"] == f"[Airflow] DAG failure_alerts failed: {run_id}"
    assert "<tr><th align=\"left\">Reason</th><td>task_failure</td></tr>" in mail["body"]["content"]
    assert "isn't defined" not in logs and "shall not contain" not in logs
    # The DAG processor starting is where Airflow 3.2's neglect of [email] email_backend is announced.
    assert ("ignores [email] email_backend" in logs) == ignores_email_backend(task_sdk_version()), logs[-3000:]


@pytest.mark.parametrize(("task_sdk", "ignored"), [
    (None, False),  # Airflow 2.11: airflow.utils.email.send_email reads the backend
    ("1.0.6", False), ("1.1.8", False),  # Airflow 3.0, 3.1: the task runner calls send_email
    ("1.2.0", True), ("1.2.2", True),  # Airflow 3.2: the smtp provider's SmtpNotifier, whatever is configured
    ("1.3.0", True),  # Airflow 3.3.0 still
    ("1.3.1", False), ("1.3.2", False), ("1.4.0", False),  # apache/airflow#69877: the backend again
])
def test_which_airflow_ignores_the_email_backend(task_sdk, ignored):
    from airflow_graph_mail.notifications.email_alerts import ignores_email_backend

    assert ignores_email_backend(task_sdk) is ignored
