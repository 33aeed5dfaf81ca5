"""Before: a report mailed through an SMTP server with the smtp provider's EmailOperator and SmtpNotifier."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.providers.smtp.operators.smtp import EmailOperator

OUTPUT = Path(os.environ.get("REPORT_OUTPUT_DIR", "/tmp/reports"))  # noqa: S108 - an example's default


@dag(schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False)
def report_by_smtp():
    @task
    def export(ds=None) -> str:
        path = OUTPUT / f"sales_{ds}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("region,revenue\nNorth,15360.50\nSouth,11020.00\n")
        return str(path)

    mail = EmailOperator(
        task_id="mail_report",
        conn_id="smtp_default",
        from_email="reports@contoso.com",
        to=["ann@contoso.com", "bob@contoso.com"],
        cc="finance@contoso.com",
        bcc="audit@contoso.com",
        subject="Sales report for {{ ds }}",
        html_content="report.html",
        files=["{{ ti.xcom_pull(task_ids='export') }}"],
        custom_headers={"X-Report-Id": "sales-{{ ds }}"},
        on_success_callback=SmtpNotifier(
            smtp_conn_id="smtp_default",
            from_email="reports@contoso.com",
            to="oncall@contoso.com",
            subject="Sent: sales report for {{ ds }}",
            html_content="<p>{{ ti.task_id }} mailed the report.</p>",
        ),
    )
    export() >> mail


report_by_smtp()
