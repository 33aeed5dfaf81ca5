"""Report distribution: build a small data set, write it as CSV and a bar chart, mail an HTML summary
with the chart inline and the CSV attached.

The body is the template file templates/sales_report.html, rendered with task context (ds, XCom);
it shows the chart with <img src="{{ cid('chart') }}">. Recipients come from REPORT_RECIPIENTS when set.
"""

from __future__ import annotations

import csv
import os
import struct
import tempfile
import zlib
from datetime import datetime
from pathlib import Path

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task

from airflow_graph_mail import GraphSendMailOperator

RECIPIENTS = os.environ.get("REPORT_RECIPIENTS", "Ann Analyst <ann@example.com>; bob@example.com")
OUTPUT_DIR = Path(os.environ.get("REPORT_OUTPUT_DIR", Path(tempfile.gettempdir()) / "graph-mail-reports"))


def bar_chart_png(values: list[float], path: Path, width: int = 320, height: int = 160) -> None:
    """A plain bar chart as PNG with the standard library only (a real DAG would use matplotlib)."""
    top, bar = max(values), width // len(values)
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            index = x // bar
            filled = index < len(values) and x % bar > 6 and height - y <= values[index] / top * (height - 10)
            row += bytes((0, 120, 212) if filled else (255, 255, 255))
        rows.append(b"\x00" + bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
                     + chunk(b"IEND", b""))


@dag(
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    template_searchpath=[str(Path(__file__).parent / "templates")],
    tags=["graph-mail", "example"],
)
def report_distribution():
    @task
    def build_report(ds: str | None = None) -> dict:
        rows = [
            {"region": "North", "orders": 128, "revenue": 15360.50},
            {"region": "South", "orders": 94, "revenue": 11020.00},
            {"region": "East", "orders": 143, "revenue": 18211.75},
            {"region": "West", "orders": 77, "revenue": 8904.25},
        ]
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUTPUT_DIR / f"sales_{ds}.csv"
        with path.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=["region", "orders", "revenue"])
            writer.writeheader()
            writer.writerows(rows)
        chart = OUTPUT_DIR / f"revenue_{ds}.png"
        bar_chart_png([r["revenue"] for r in rows], chart)
        return {"csv_path": str(path), "chart_path": str(chart), "rows": rows,
                "total": round(sum(r["revenue"] for r in rows), 2)}

    report = build_report()

    GraphSendMailOperator(
        task_id="send_report",
        to=RECIPIENTS,
        cc="sales-leads@example.com",
        subject="Daily sales report for {{ ds }}",
        body="sales_report.html",
        attachments=["{{ ti.xcom_pull(task_ids='build_report')['csv_path'] }}"],
        inline_images={"chart": "{{ ti.xcom_pull(task_ids='build_report')['chart_path'] }}"},
        headers={"x-report-id": "sales-{{ ds_nodash }}"},
    ).set_upstream(report)


report_distribution()
