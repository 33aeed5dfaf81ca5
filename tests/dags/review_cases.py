"""The review gate in each mode: REVIEW_MODE picks deferrable, poke or reschedule."""

from __future__ import annotations

import os
from datetime import datetime

try:
    from airflow.sdk import dag
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag  # type: ignore[attr-defined, no-redef]

from airflow_graph_mail.operators.graph_mail import GraphDraftOperator
from airflow_graph_mail.sensors.graph_mail import GraphDraftSentSensor

MODE = os.environ.get("REVIEW_MODE", "poke")


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def review_gate():
    draft = GraphDraftOperator(task_id="make_draft", to="board@example.com", subject="For review {{ ds }}",
                               body="<p>Numbers</p>")
    gate = GraphDraftSentSensor(
        task_id="wait_for_review", message_id="{{ ti.xcom_pull(task_ids='make_draft', key='draft_id') }}",
        deferrable=MODE == "deferrable", mode="reschedule" if MODE == "reschedule" else "poke",
        poke_interval=1, timeout=float(os.environ.get("REVIEW_TIMEOUT", "120")),
        on_discard=os.environ.get("REVIEW_ON_DISCARD", "fail"))
    draft >> gate


review_gate()


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def review_gate_fixed_draft():
    """The gate alone, on a draft the test made (REVIEW_DRAFT_ID): for a run with a real triggerer."""
    GraphDraftSentSensor(task_id="wait_for_review", message_id=os.environ.get("REVIEW_DRAFT_ID", "unset"),
                         deferrable=True, poke_interval=1, timeout=120)


review_gate_fixed_draft()
