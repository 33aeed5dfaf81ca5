from datetime import datetime
from pathlib import Path
import tempfile

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail import GraphSendMailOperator


@dag(schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False)
def sales_report():
    @task
    def build_report(ds=None) -> str:
        path = Path(tempfile.gettempdir()) / f"sales_{ds}.csv"
        path.write_text("region,revenue\nNorth,15360.50\nSouth,11020.00\n")
        return str(path)

    GraphSendMailOperator(
        task_id="send_report",
        to="Ann Analyst <ann@example.com>; bob@example.com",  # or a list
        cc=["sales-leads@example.com"],
        subject="Daily sales report for {{ ds }}",
        body="templates/daily_sales.html",  # a template file next to this one, or an inline string
        attachments=["{{ ti.xcom_pull(task_ids='build_report') }}"],  # paths, globs, URIs, bytes: any size
        headers={"x-report-id": "sales-{{ ds_nodash }}"},
    ).set_upstream(build_report())


sales_report()
