"""After: the same report mailed through Microsoft Graph with GraphSendMailOperator and GraphMailNotifier."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier
from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator

OUTPUT = Path(os.environ.get("REPORT_OUTPUT_DIR", "/tmp/reports"))  # noqa: S108 - an example's default


@dag(schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False)
def report_by_graph():
    @task
    def export(ds=None) -> str:
        path = OUTPUT / f"sales_{ds}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("region,revenue\nNorth,15360.50\nSouth,11020.00\n")
        return str(path)

    mail = GraphSendMailOperator(
        task_id="mail_report",
        graph_mail_conn_id="graph_mail_default",
        sender="reports@contoso.com",
        to=["ann@contoso.com", "bob@contoso.com"],
        cc="finance@contoso.com",
        bcc="audit@contoso.com",
        subject="Sales report for {{ ds }}",
        body="report.html",
        attachments=["{{ ti.xcom_pull(task_ids='export') }}"],
        headers={"X-Report-Id": "sales-{{ ds }}"},
        on_success_callback=GraphMailNotifier(
            graph_mail_conn_id="graph_mail_default",
            from_email="reports@contoso.com",
            to="oncall@contoso.com",
            subject="Sent: sales report for {{ ds }}",
            html_content="<p>{{ ti.task_id }} mailed the report.</p>",
        ),
    )
    export() >> mail


report_by_graph()
