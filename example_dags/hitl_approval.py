"""Human in the loop (Airflow 3.1+): ask an approver by mail before the report goes out.

ApprovalOperator waits for someone to press Approve or Reject in Airflow's UI; GraphMailNotifier, given as
one of its notifiers, mails the approver the question, the options and a link to respond (set
``[api] base_url`` so that the link points at your Airflow). On Airflow without HITL (2.11, 3.0) this file
defines no DAG and the rest of the provider is unaffected.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.exceptions import AirflowOptionalProviderFeatureException

try:
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk import dag, task
except (ImportError, AirflowOptionalProviderFeatureException):  # Airflow before 3.1 (3.0 raises the latter)
    ApprovalOperator = None

from airflow_graph_mail import GraphMailNotifier

APPROVER = os.environ.get("REPORT_APPROVER", "approver@example.com")
WAIT = timedelta(seconds=float(os.environ.get("APPROVAL_TIMEOUT_SECONDS", str(24 * 3600))))

if ApprovalOperator is not None:

    @dag(schedule="@weekly", start_date=datetime(2026, 1, 1), catchup=False, tags=["graph-mail", "example"])
    def hitl_approval():
        @task
        def build_report(ds: str | None = None) -> str:
            return f"Revenue {ds}: 1.2M"

        approve = ApprovalOperator(
            task_id="approve_report",
            subject="Publish the weekly revenue report for {{ ds }}?",
            body="{{ ti.xcom_pull(task_ids='build_report') }}",
            defaults="Reject",  # nobody answered within the response timeout: do not publish
            response_timeout=WAIT,
            notifiers=[GraphMailNotifier(to=APPROVER)],
        )

        @task
        def publish(ds: str | None = None) -> str:
            return f"published the report for {ds}"

        build_report() >> approve >> publish()

    hitl_approval()
