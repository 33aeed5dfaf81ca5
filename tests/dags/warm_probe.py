"""What a `dags test` run sees of its environment: tests/test_warm_airflow.py runs it through the warm runner."""

from __future__ import annotations

import builtins
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.11
    from airflow.decorators import dag, task  # type: ignore[attr-defined, no-redef]


@dag(schedule=None, start_date=datetime(2026, 1, 1))
def warm_probe():
    @task
    def look() -> None:
        runs = getattr(builtins, "warm_probe_runs", 0) + 1  # a process-wide count: 1 in a fresh process
        builtins.warm_probe_runs = runs  # type: ignore[attr-defined]
        Path(os.environ["CASE_DIR"], "started").touch()
        time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
        seen = {"probe": os.environ.get("PROBE"), "runs": runs,
                "debug": logging.getLogger("airflow.task").isEnabledFor(logging.DEBUG)}
        Path(os.environ["CASE_DIR"], "seen.json").write_text(json.dumps(seen))

    look()


warm_probe()
