"""A mail merge's check in a fresh process: `python bench/merge_check.py ours|jinja ROWS`, connection in the env.

``ours``: GraphMailMergeOperator with ``check_only=True`` over a .csv of ROWS customers (to, subject and an
HTML body rendered per row, each mail checked as it would be sent: recipients, size, allow-list).
``jinja``: the baseline, the same three templates compiled once with plain Jinja and rendered per row.
Prints JSON {"seconds", "cpu_seconds", "rss_growth"} for one pass, after the process is warm: the median
of several passes when the rows are few (a 5,000-row pass takes a fraction of a second).
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from peak_memory import reset_peak, status
from small_send import task_logging

TO = "{{ row.email }}"
SUBJECT = "Your statement for {{ ds }}"
BODY = ("<p>Dear {{ row.name }},</p><p>your balance on {{ ds }} is <b>{{ row.balance }}</b> EUR.</p>"
        "{% if row.balance|float > 1000 %}<p>Thank you for your custom.</p>{% endif %}")


def write_rows(directory: Path, count: int) -> Path:
    path = directory / f"customers-{count}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "balance"])
        for n in range(count):
            writer.writerow([f"customer{n}@example.com", f"Customer {n}", f"{n % 5000}.50"])
    return path


def ours(path: Path) -> None:
    from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator

    merge = GraphMailMergeOperator(task_id="statements", rows=str(path), to=TO, subject=SUBJECT, body=BODY,
                                   idempotency_key="statements-2026-11-20", check_only=True)
    counts = merge.execute({"ds": "2026-11-20", "params": {}})
    assert counts["checked"] == sum(1 for _ in path.open()) - 1, counts  # beside it, the sending plan


def jinja(path: Path) -> None:
    import jinja2

    from airflow_graph_mail.mail.rows import load_rows

    env = jinja2.Environment(autoescape=True)
    templates = [env.from_string(t) for t in (TO, SUBJECT, BODY)]
    for row in load_rows(str(path)):
        for template in templates:
            template.render({"ds": "2026-11-20", "params": {}, "row": row})


def main(mode: str, count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        warm = write_rows(Path(tmp), 50)
        run = ours if mode == "ours" else jinja
        run(warm)  # imports, the hook's connection, Jinja's caches
        path = write_rows(Path(tmp), count)
        passes = []
        for _ in range(max(1, 50_000 // count)):
            before = reset_peak()
            start, cpu = time.perf_counter(), time.process_time()
            run(path)
            passes.append({"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                           "rss_growth": status("VmHWM") - before})
        result = {key: statistics.median(p[key] for p in passes) for key in passes[0]}
        print(json.dumps(result), file=sys.__stdout__, flush=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as logs:
        task_logging(Path(logs))
        main(sys.argv[1], int(sys.argv[2]))
