"""DAGs whose tasks fail and are retried by Airflow, to show that a retry never sends a mail twice."""

from __future__ import annotations

from datetime import datetime, timedelta

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task  # type: ignore[attr-defined, no-redef]

from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator
from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator

RETRY = {"retries": 2, "retry_delay": timedelta(seconds=0)}


class SendThenDie(GraphSendMailOperator):
    """Sends, then fails on its first try as a worker lost after sendMail would."""

    def execute(self, context):
        outcome = super().execute(context)
        print(f"try {context['ti'].try_number}: {outcome}")
        if context["ti"].try_number == 1:
            raise RuntimeError("worker lost after sending")
        return outcome


@dag(schedule=None, start_date=datetime(2026, 1, 1), default_args=RETRY)
def send_retried():
    SendThenDie(task_id="send", to="ann@example.com", subject="Daily report {{ ds }}", body="<p>once</p>")


@dag(schedule=None, start_date=datetime(2026, 1, 1), default_args=RETRY)
def merge_retried():
    @task
    def customers() -> list[dict]:
        return [{"email": f"customer{i}@example.com", "name": f"Customer {i}", "amount": 100 + i} for i in range(8)]

    GraphMailMergeOperator(
        task_id="statements",
        rows=customers(),
        to="{{ row.name }} <{{ row.email }}>",
        subject="Statement for {{ row.name }} ({{ ds }})",
        body="<p>Dear {{ row.name }}, you owe {{ row.amount }}.</p>",
        attachments=[("statement-{{ row.amount }}.csv", "name,amount\n{{ row.name }},{{ row.amount }}\n")],
    )


send_retried()
merge_retried()
