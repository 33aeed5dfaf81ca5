import base64
import tempfile
from datetime import datetime
from pathlib import Path

try:  # Airflow 3
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail import GraphSendMailOperator

# A 1x1 blue PNG; a real DAG draws the chart, e.g. with matplotlib's plt.savefig(path).
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgaPgPAAJ+AX6mWBGfAAAAAElFTkSuQmCC")


@dag(schedule="@daily", start_date=datetime(2026, 1, 1), catchup=False)
def revenue_chart():
    @task
    def draw_chart(ds=None) -> str:
        folder = Path(tempfile.gettempdir()) / f"revenue-{ds}"
        folder.mkdir(exist_ok=True)
        for region in ("north", "south"):
            (folder / f"{region}.csv").write_text(f"region,revenue\n{region},100\n")
        (folder / "chart.png").write_bytes(PNG)
        return str(folder)

    GraphSendMailOperator(
        task_id="send_chart",
        to="ann@example.com",
        subject="Revenue {{ ds }}",
        body="""<p>Revenue by region:</p><img src="{{ cid('chart') }}">""",
        inline_images={"chart": "{{ ti.xcom_pull(task_ids='draw_chart') }}/chart.png"},
        attachments=["{{ ti.xcom_pull(task_ids='draw_chart') }}/*.csv"],  # a glob: every CSV the task wrote
    ).set_upstream(draw_chart())


revenue_chart()
