"""A real Airflow 3 deployment for a test: scheduler, triggerer, DAG processor and the execution API server, each
its own process (group), on a throw-away AIRFLOW_HOME with SQLite and the LocalExecutor.

What `airflow dags test` cannot show: a trigger row made by the DAG processor, an asset watcher run by the
triggerer, events committed by its supervisor, runs made by the scheduler, and what survives `kill -9` of
the triggerer. Settings as measured in the inbound research (health threshold 6 s, heartbeats of 1 s).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from airflow_env import AIRFLOW, airflow_env, migrate
from cryptography.fernet import Fernet


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Deployment:
    def __init__(self, home: Path, template: Path, connection: dict, dags_folder: Path, **extra: str):
        migrate(home, template=template)
        port = free_port()
        self.home = home
        self.env = airflow_env(home, connection, dags_folder, **{
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API_AUTH__JWT_SECRET": "inbound-test-jwt-secret-0123456789abcdef",
            "AIRFLOW__API__SECRET_KEY": "inbound-test-secret-key-0123456789",
            # One key for every process: each would otherwise write its own airflow.cfg with a key of its own,
            # and the triggerer could not read the trigger kwargs the DAG processor encrypted.
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
            # The DAG folder is written before the start and never changes: one parse, not one every 5 s (each
            # parse a process of its own; 16 of the scenario's ~200 CPU seconds)
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            **extra})
        self.port = port
        self.processes: dict[str, subprocess.Popen] = {}
        self.started: dict[str, int] = {}

    def start(self, name: str, *arguments: str) -> None:
        """``airflow <arguments>`` in a process group of its own, its output in ``<home>/<name>.log``."""
        self.started[name] = self.started.get(name, 0) + 1
        log = (self.home / f"{name}.log").open("a")
        log.write(f"\n===== start {self.started[name]} =====\n")
        log.flush()
        self.processes[name] = subprocess.Popen([AIRFLOW, *arguments], env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start_all(self) -> None:
        self.start("api-server", "api-server", "--apps", "execution", "--workers", "1", "--port", str(self.port))
        self.start("dag-processor", "dag-processor")
        self.start("scheduler", "scheduler")
        self.start("triggerer", "triggerer", "--skip-serve-logs")

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = 60) -> None:
        """Signal the process group this deployment made for ``name`` (the triggerer's supervisor, its runner
        child and what they started), and wait for its leader; SIGKILL when it does not end in ``timeout``."""
        process = self.processes.pop(name)
        for signal_number, wait in ((sig, timeout), (signal.SIGKILL, 60)):
            try:
                os.killpg(process.pid, signal_number)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM, timeout=30)

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def db(self, sql: str, *arguments) -> list[tuple]:
        with sqlite3.connect(self.home / "airflow.db", timeout=30) as db:
            return db.execute(sql, arguments).fetchall()

    @staticmethod
    def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.25):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(step)
        return None
