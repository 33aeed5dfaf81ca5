"""Mail merge, then a bounce report: who did not get their statement, and why.

GraphBounceReportOperator waits (deferred, in the triggerer) for Exchange's non-delivery reports, ties each
to its row by a header every keyed mail carries, and pushes per bounced recipient the address, the status
code and its meaning; its ``outcomes`` XCom is the merge's, each row with its bounces. The task fails when
more than BOUNCE_FAIL_SHARE of the mails bounced.

Against the emulator, make addresses bounce with ``--bounce 'c07@example.com=5.2.2'`` (or
``graph_emulator.backend.bounces.add(...)`` in tests); an unknown address in the tenant's own domain
bounces with 5.1.10.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

try:
    from airflow.sdk import dag
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag

from airflow_graph_mail import GraphBounceReportOperator, GraphMailMergeOperator

CUSTOMERS = [{"email": f"c{i:02d}@example.com", "name": f"Customer {i}", "balance": f"{i * 12.5:.2f}"}
             for i in range(1, 21)]
SETTLE = timedelta(seconds=float(os.environ.get("BOUNCE_SETTLE_SECONDS", "600")))


@dag(schedule="@monthly", start_date=datetime(2026, 1, 1), catchup=False, tags=["graph-mail", "example"])
def statements_bounce_report():
    statements = GraphMailMergeOperator(
        task_id="send_statements",
        rows=CUSTOMERS,
        key_field="email",
        to="{{ row.email }}",
        subject="Your statement for {{ ds }}",
        body="<p>Dear {{ row.name }},</p><p>your balance is {{ row.balance }}.</p>",
        autoescape=True,
    )
    bounces = GraphBounceReportOperator(
        task_id="bounce_report",
        sent_by="send_statements",
        settle=SETTLE,
        fail_on_bounce=float(os.environ.get("BOUNCE_FAIL_SHARE", "0.2")),
        deferrable=True,
    )
    statements >> bounces


statements_bounce_report()
