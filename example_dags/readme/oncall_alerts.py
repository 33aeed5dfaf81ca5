from datetime import datetime

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail import GraphMailNotifier


@dag(schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False,
     on_failure_callback=GraphMailNotifier(to="oncall@contoso.com", cc="owners@contoso.com"))
def oncall_alerts():
    @task(on_failure_callback=GraphMailNotifier(to="oncall@contoso.com"))
    def load():
        raise RuntimeError("the source table is empty")

    load()


oncall_alerts()
