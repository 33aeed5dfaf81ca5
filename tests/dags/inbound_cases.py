"""The inbound operators through Airflow, on mail the test made arrive (ids in INBOUND_* variables): mark done,
forward, a deferred sensor, and what fails or skips (a limit, a mail gone, no mail named), none retried."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

try:
    from airflow.sdk import dag
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag  # type: ignore[attr-defined, no-redef]

from airflow_graph_mail import (
    GraphMailSensor,
    GraphMarkMailOperator,
    GraphReplyOperator,
    GraphSaveAttachmentsOperator,
)

INBOX = "reports-in@contoso.com"
MAIL = os.environ.get("INBOUND_MAIL", "unset")
GONE = os.environ.get("INBOUND_GONE", "unset")
STORE = os.environ.get("INBOUND_STORE", "/tmp/inbound-cases")


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
     default_args={"retries": 2, "retry_delay": timedelta(seconds=1)})
def inbound_cases():
    wait = GraphMailSensor(task_id="wait_deferred", mailbox=INBOX, subject="Late case", deferrable=True,
                           poke_interval=1, timeout=60)
    forward = GraphReplyOperator(task_id="forward", message_id=MAIL, mailbox=INBOX, action="forward",
                                 to="finance@contoso.com", body="FYI: {{ ds }}", body_type="text")
    mark = GraphMarkMailOperator(task_id="mark", message_id=MAIL, mailbox=INBOX, move_to="archive",
                                 category=["Loaded"], mark_read=True)
    wait >> forward >> mark
    GraphSaveAttachmentsOperator(task_id="too_many", message_id=MAIL, mailbox=INBOX, destination=STORE,
                                 max_attachments=2)
    GraphSaveAttachmentsOperator(task_id="gone", message_id=GONE, mailbox=INBOX, destination=STORE)
    GraphMarkMailOperator(task_id="no_mail_named", mark_read=True)


inbound_cases()
