from datetime import datetime

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail import GraphMailMergeOperator


@dag(schedule="@monthly", start_date=datetime(2026, 1, 1), catchup=False)
def customer_statements():
    @task
    def load_customers() -> list[dict]:
        return [{"email": "ann@example.com", "name": "Ann", "amount": 120.5},
                {"email": "bob@example.com", "name": "Bob", "amount": 80}]

    GraphMailMergeOperator(
        task_id="statements",
        rows=load_customers(),          # a list of dicts, or a .csv / .json / .jsonl path or URI
        key_field="email",              # optional: identify rows by a column instead of their position
        to="{{ row.name }} <{{ row.email }}>",
        subject="Your statement for {{ ds }}",
        body="<p>Dear {{ row.name }}, your balance is {{ row.amount }}.</p>",  # or a template file
        attachments=[("statement-{{ row.email }}.csv", "amount\n{{ row.amount }}\n")],
    )


customer_statements()
