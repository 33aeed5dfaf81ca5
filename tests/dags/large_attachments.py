"""Attachments from 0 bytes to 100 MB, alone and mixed with an inline image, through both operators."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task  # type: ignore[attr-defined, no-redef]

from airflow_graph_mail.operators.graph_mail import GraphDraftOperator, GraphSendMailOperator

CASE_DIR = Path(os.environ.get("CASE_DIR", "/tmp"))
MB = 1024 * 1024
# label -> size; file names carry non-ASCII characters, which must arrive unchanged
SIZES = {"0B": 0, "1KB": 1000, "2.9MB": 2_900_000, "3MB": 3_000_000, "3.1MB": 3_100_000, "10MB": 10 * MB,
         "100MB": 100 * MB}
MIXED = [label for label in SIZES if label != "100MB"]


def file_name(label: str) -> str:
    return f"données-{label}.bin"


@dag(schedule=None, start_date=datetime(2026, 1, 1))
def graph_mail_large_attachments():
    @task
    def make_files() -> dict[str, str]:
        """Generated here, never committed: random bytes, written in 4 MB blocks."""
        paths = {}
        for label, size in {**SIZES, "chart": 25_000}.items():
            path = CASE_DIR / (file_name(label) if label != "chart" else "chart.png")
            with path.open("wb") as file:
                for start in range(0, size, 4 * MB):
                    file.write(os.urandom(min(4 * MB, size - start)))
            paths[label] = str(path)
        return paths

    files = make_files()

    def path_of(label: str) -> str:
        return "{{ ti.xcom_pull(task_ids='make_files')['" + label + "'] }}"

    mixed: dict[str, Any] = {"attachments": [path_of(label) for label in MIXED],
                             "inline_images": {"chart": path_of("chart")},
                             "body": "<p>All sizes</p><img src=\"{{ cid('chart') }}\">"}
    for operator, prefix in ((GraphSendMailOperator, "send"), (GraphDraftOperator, "draft")):
        for label in SIZES:
            files >> operator(task_id=f"{prefix}_{label.replace('.', '_')}", to="ann@example.com",
                              subject=f"{prefix} {label}", body="<p>{{ ds }}</p>", attachments=[path_of(label)])
        files >> operator(task_id=f"{prefix}_mixed", to="ann@example.com", subject=f"{prefix} mixed", **mixed)


graph_mail_large_attachments()
