"""A run at DEBUG logging that signs in three ways and uploads a large attachment: no secret may show."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task  # type: ignore[attr-defined, no-redef]

from airflow_graph_mail.operators.graph_mail import GraphDraftOperator, GraphSendMailOperator

CASE_DIR = Path(os.environ.get("CASE_DIR", "/tmp"))


@dag(schedule=None, start_date=datetime(2026, 1, 1))
def graph_mail_debug_secrets():
    @task
    def write_report() -> str:
        path = CASE_DIR / "ledger.bin"
        path.write_bytes(os.urandom(5 * 1024 * 1024))  # an upload session, whose URL carries a token
        return str(path)

    report = write_report()
    large = GraphSendMailOperator(task_id="send_large", to="ann@example.com", subject="Ledger {{ ds }}",
                                  body="<p>attached</p>", attachments=["{{ ti.xcom_pull(task_ids='write_report') }}"])
    report >> large
    GraphSendMailOperator(task_id="send_with_certificate", to="bob@example.com", subject="Signed with a certificate",
                          graph_mail_conn_id="graph_mail_cert")
    GraphDraftOperator(task_id="draft_as_a_user", to="carol@example.com", subject="Delegated draft",
                       graph_mail_conn_id="graph_mail_delegated")


graph_mail_debug_secrets()
