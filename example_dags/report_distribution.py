"""Report distribution: build a small data set, write it as CSV, mail an HTML summary with the CSV attached.

The body is the template file templates/sales_report.html, rendered with task context (ds, XCom).
Recipients come from the REPORT_RECIPIENTS environment variable when set.
"""

from __future__ import annotations

import csv
import os
import tempfile
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, task

from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator

RECIPIENTS = os.environ.get("REPORT_RECIPIENTS", "Ann Analyst <ann@example.com>; bob@example.com")
OUTPUT_DIR = Path(os.environ.get("REPORT_OUTPUT_DIR", Path(tempfile.gettempdir()) / "graph-mail-reports"))


@dag(
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    template_searchpath=[str(Path(__file__).parent / "templates")],
    tags=["graph-mail", "example"],
)
def report_distribution():
    @task
    def build_report(ds: str | None = None) -> dict:
        rows = [
            {"region": "North", "orders": 128, "revenue": 15360.50},
            {"region": "South", "orders": 94, "revenue": 11020.00},
            {"region": "East", "orders": 143, "revenue": 18211.75},
            {"region": "West", "orders": 77, "revenue": 8904.25},
        ]
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUTPUT_DIR / f"sales_{ds}.csv"
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=["region", "orders", "revenue"])
            writer.writeheader()
            writer.writerows(rows)
        return {"csv_path": str(path), "rows": rows, "total": round(sum(r["revenue"] for r in rows), 2)}

    report = build_report()

    GraphSendMailOperator(
        task_id="send_report",
        to=RECIPIENTS,
        cc="sales-leads@example.com",
        subject="Daily sales report for {{ ds }}",
        body="sales_report.html",
        attachments=["{{ ti.xcom_pull(task_ids='build_report')['csv_path'] }}"],
        headers={"x-report-id": "sales-{{ ds_nodash }}"},
    ).set_upstream(report)


report_distribution()
