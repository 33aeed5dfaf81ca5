"""Human-in-the-loop (Airflow 3.1+): GraphMailNotifier as an ApprovalOperator's notifier mails the question,
the options and the link to respond; without HITL the example defines nothing and nothing else changes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers import as_context, load_module

EXAMPLE = Path(__file__).resolve().parent.parent / "example_dags" / "hitl_approval.py"


def has_hitl() -> bool:
    from airflow.exceptions import AirflowOptionalProviderFeatureException

    try:
        from airflow.providers.standard.operators.hitl import ApprovalOperator  # noqa: F401
    except (ImportError, AirflowOptionalProviderFeatureException):  # the latter: Airflow 3.0's standard provider
        return False
    return True


def test_the_example_parses_on_every_airflow():
    module = load_module("hitl_example", EXAMPLE)
    assert hasattr(module, "hitl_approval") == has_hitl()


@pytest.mark.skipif(not has_hitl(), reason="this Airflow has no human-in-the-loop operators (3.1+)")
def test_the_approval_request_is_mailed_with_a_link_to_respond(airflow_home, warm_airflow, graph_emulator):
    """`airflow dags test` runs until the ApprovalOperator waits for a person; by then the mail has gone."""
    from airflow_env import AIRFLOW, airflow_env

    env = airflow_env(airflow_home, graph_emulator.connection(), EXAMPLE.parent,
                      AIRFLOW__API__BASE_URL="https://airflow.contoso.com")
    argv = ["dags", "test", "hitl_approval", "2026-11-20"]
    if warm_airflow is None:
        run = subprocess.Popen([AIRFLOW, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        run = warm_airflow.popen(argv, env, os.devnull, os.devnull)
    try:
        deadline = time.monotonic() + 180
        while not graph_emulator.inspect.messages("approver@example.com") and time.monotonic() < deadline:
            assert run.poll() is None, "the DAG run ended before the approval mail"
            time.sleep(0.5)
    finally:
        run.kill()
        run.wait()
    (mail,) = graph_emulator.inspect.messages("approver@example.com")
    assert mail["subject"] == "[Airflow] Your input is needed: Publish the weekly revenue report for 2026-11-20?"
    body = mail["body"]["content"]
    assert "Revenue 2026-11-20: 1.2M" in body and "Approve, Reject" in body and "Reject after 1 day, 0:00:00" in body
    assert ('href="https://airflow.contoso.com/dags/hitl_approval/runs/' in body
            and '/tasks/approve_report/required_actions?map_index=-1">Respond in Airflow</a>' in body)


@pytest.mark.skipif(not has_hitl(), reason="this Airflow has no human-in-the-loop operators (3.1+)")
def test_a_question_over_several_lines_is_folded_into_the_subject(graph_emulator, monkeypatch):
    """Airflow's UI shows an approval question over several lines; a mail subject is one line, so the
    question is folded (a line break would be refused as header injection, and no mail would go out)."""
    import json
    from types import SimpleNamespace

    from airflow.providers.standard.operators.hitl import ApprovalOperator

    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_DEFAULT", json.dumps(graph_emulator.connection()))
    notifier = GraphMailNotifier(to="approver@example.com")
    approve = ApprovalOperator(task_id="approve_report", subject="Publish the report\r\nfor 2026-11-20?\n\u2028Now",
                               body="Revenue: 1.2M", notifiers=[notifier])
    ti = SimpleNamespace(dag_id="hitl_approval", task_id="approve_report", map_index=-1, run_id="manual__1")
    notifier.notify(as_context({"task": approve, "task_instance": ti, "ti": ti, "run_id": "manual__1"}))
    (mail,) = graph_emulator.inspect.messages("approver@example.com")
    assert mail["subject"] == "[Airflow] Your input is needed: Publish the report for 2026-11-20? Now"
    assert "Revenue: 1.2M" in mail["body"]["content"]
