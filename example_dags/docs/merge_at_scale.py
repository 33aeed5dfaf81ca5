"""A notice to 25,000 customers from one mailbox: more than Exchange Online lets a mailbox send in a day.

Exchange Online counts every recipient (To, Cc and Bcc) a mailbox sent in the last 24 hours and bounces mail
past 10,000 with 5.1.90. So GraphMailMergeOperator plans the rows against the mailbox before its first send,
and with ``over_limit="defer"`` sends the rows that fit, waits in the triggerer (no worker slot held) until the
window has room, and goes on where it stopped: here over three windows, each row sent once. Each branch's
notice goes to its manager with the branch's customers in Bcc (500 recipients, Exchange's default limit per
message). The bounce report then waits until the notices have left the Outbox, and fails on any bounce.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail import GraphBounceReportOperator, GraphMailMergeOperator

BRANCHES = int(os.environ.get("MERGE_BRANCHES", "50"))
OUTPUT_DIR = Path(os.environ.get("REPORT_OUTPUT_DIR", Path(tempfile.gettempdir()) / "graph-mail-reports"))


@dag(schedule="@monthly", start_date=datetime(2026, 1, 1), catchup=False, tags=["graph-mail", "example"])
def merge_at_scale():
    @task
    def export_customers(ds: str | None = None) -> str:
        """One row per branch: its manager and its 499 customers (a query's export, in real life)."""
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUTPUT_DIR / f"branches-{ds}.jsonl"
        with path.open("w") as rows:
            for branch in range(BRANCHES):
                customers = [f"c{branch:03d}-{n:03d}@example.com" for n in range(499)]
                rows.write(json.dumps({"branch": branch, "manager": f"branch{branch:03d}@example.com",
                                       "customers": customers}) + "\n")
        return str(path)

    notices = GraphMailMergeOperator(
        task_id="notices",
        rows="{{ ti.xcom_pull(task_ids='export_customers') }}",
        key_field="manager",
        to="{{ row.manager }}",
        bcc="{{ row.customers }}",  # a list: one recipient per entry
        subject="Service notice for branch {{ row.branch }}",
        body="<p>Our service hours change on {{ ds }}.</p>",
        over_limit=os.environ.get("MERGE_OVER_LIMIT", "defer"),  # "fail": fail before sending, naming the numbers
        poke_interval=float(os.environ.get("MERGE_POKE_SECONDS", "300")),
    )
    bounces = GraphBounceReportOperator(
        task_id="bounce_report",
        sent_by="notices",
        settle=timedelta(seconds=float(os.environ.get("BOUNCE_SETTLE_SECONDS", "600"))),
        poke_interval=float(os.environ.get("MERGE_POKE_SECONDS", "300")),
        deferrable=True,
    )
    export_customers() >> notices >> bounces


merge_at_scale()
