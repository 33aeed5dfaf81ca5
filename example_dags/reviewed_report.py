"""Reviewed report: build a report -> draft it -> wait until a person sends it from Outlook -> tell the owner.

The review gate (GraphDraftSentSensor) waits in the triggerer (deferrable), so no worker slot is held while
the reviewer takes two days. The reviewer may change the recipients or the subject before sending: the
owner's note says what finally went out. A discarded draft fails the gate (REVIEW_ON_DISCARD=skip skips
the rest instead).

Against the emulator, play the reviewer with the Send or Discard button on the draft in the mailbox viewer,
or POST /_emulator/messages/{id}/send (or /discard).
"""

from __future__ import annotations

import csv
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail import GraphDraftOperator, GraphDraftSentSensor, GraphSendMailOperator

REVIEWER_DRAFT_TO = os.environ.get("REVIEW_RECIPIENTS", "board@example.com")
OWNER = os.environ.get("REPORT_OWNER", "owner@example.com")
POLL_SECONDS = float(os.environ.get("REVIEW_POLL_SECONDS", "60"))
OUTPUT_DIR = Path(os.environ.get("REPORT_OUTPUT_DIR", Path(tempfile.gettempdir()) / "graph-mail-reports"))


@dag(schedule="@weekly", start_date=datetime(2026, 1, 1), catchup=False, tags=["graph-mail", "example"])
def reviewed_report():
    @task
    def build_report(ds: str | None = None) -> str:
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUTPUT_DIR / f"revenue-{ds}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["region", "revenue"])
            writer.writerows([["North", 15360.50], ["South", 9120.00], ["West", 11045.25]])
        return str(path)

    draft = GraphDraftOperator(
        task_id="make_draft",
        to=REVIEWER_DRAFT_TO,
        subject="Weekly revenue for {{ ds }}",
        body="<p>Dear board,</p><p>The weekly revenue report is attached.</p>",
        attachments=["{{ ti.xcom_pull(task_ids='build_report') }}"],
    )
    review = GraphDraftSentSensor(
        task_id="wait_for_review",
        message_id="{{ ti.xcom_pull(task_ids='make_draft', key='draft_id') }}",
        deferrable=True,
        poke_interval=POLL_SECONDS,
        timeout=timedelta(days=3).total_seconds(),
        on_discard=os.environ.get("REVIEW_ON_DISCARD", "fail"),
    )
    tell_owner = GraphSendMailOperator(
        task_id="tell_owner",
        to=OWNER,
        subject="Sent after review: {{ ti.xcom_pull(task_ids='wait_for_review', key='sent')['subject'] }}",
        body="{% set sent = ti.xcom_pull(task_ids='wait_for_review', key='sent') %}"
             "<p>The reviewer sent the report at {{ sent['sent_at'] }} to {{ sent['to'] | join(', ') }}"
             "{% if sent['cc'] %} (cc {{ sent['cc'] | join(', ') }}){% endif %}.</p>",
    )
    build_report() >> draft >> review >> tell_owner


reviewed_report()
