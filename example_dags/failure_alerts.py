"""Failure alerts through Microsoft Graph, two ways.

1. ``GraphMailNotifier`` as a callback: the task's on_failure_callback mails the task's report (try,
   exception, log link); the DAG's on_failure_callback mails the run's.
2. Airflow's own alert e-mail (``email=...``) with ``[email] email_backend`` pointed at
   ``airflow_graph_mail.email_backend.send_email``: nothing else changes in the DAG. Airflow 3.2.0 to
   3.3.0 ignore that setting for these alerts (apache/airflow#65012); there the provider's listener
   sends them from the failed task (``airflow_graph_mail.notifications.email_alerts``). The notifiers of
   1. work the same on every supported Airflow.

``check_freshness`` fails on purpose while the ``fail`` param is true (the default), so the alerts
can be seen against the local emulator: ``airflow dags test failure_alerts``.
"""

from __future__ import annotations

import os
from datetime import datetime

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail import GraphMailNotifier

ONCALL = os.environ.get("ALERT_RECIPIENTS", "oncall@example.com")


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["graph-mail", "example"],
     params={"fail": True},
     on_failure_callback=GraphMailNotifier(to=ONCALL, cc="data-owners@example.com"))
def failure_alerts():
    @task(retries=0, email=[ONCALL], email_on_failure=True, email_on_retry=False,
          on_failure_callback=GraphMailNotifier(to=ONCALL, custom_headers={"X-Alert-Source": "airflow"}))
    def check_freshness(params=None):
        if params["fail"]:
            raise RuntimeError("sales table is 26 hours old (limit: 24) <check the loader>")
        return "fresh"

    check_freshness()


failure_alerts()
