"""Run DAGs with `airflow dags test` in a throw-away AIRFLOW_HOME (used by `make demo` and the tests)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def airflow_env(home: Path, connection: dict | None, dags_folder: Path = ROOT / "example_dags", **extra: str) -> dict:
    """Environment for a private Airflow: its own home and SQLite DB, our DAGs, the emulator's connection
    (none in the environment with ``connection=None``: see ``store_connection``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **({"AIRFLOW_CONN_GRAPH_MAIL_DEFAULT": json.dumps(connection)} if connection is not None else {}),
        **extra,
    })
    return env


def store_connection(env: dict, conn_id: str, connection: dict) -> str:
    """`airflow connections add`: the connection in the metadata database, as README sets it up."""
    return airflow(env, "connections", "add", conn_id, "--conn-json", json.dumps(connection))


def migrate(home: Path, template: Path | None = None) -> None:
    """Create the metadata DB; copying a migrated template DB saves ~10 s per home."""
    home.mkdir(parents=True, exist_ok=True)
    if template is not None and (template / "airflow.db").exists():
        shutil.copy(template / "airflow.db", home / "airflow.db")
        return
    env = airflow_env(home, {})
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, text=True)


def dags_test(dag_id: str, env: dict, logical_date: str = "2026-11-20", timeout: int = 240):
    """`airflow dags test`; returns the CompletedProcess (stdout and stderr hold the task logs)."""
    return subprocess.run([AIRFLOW, "dags", "test", dag_id, logical_date], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


class WarmAirflow:
    """`airflow dags test` run by ``warm_airflow.py`` in ``home``: each run a fork of one process that started
    Airflow once (on Airflow 3, most of a run's time); the same command, arguments and environment."""

    def __init__(self, home: Path, env: dict):
        self.home = home
        python = str(Path(AIRFLOW).parent / "python")
        self._server = subprocess.Popen([python, str(ROOT / "scripts" / "warm_airflow.py")], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._answer(timeout=300)  # {"ready": true}

    def _answer(self, timeout: float) -> dict:
        assert self._server.stdout is not None
        if not select.select([self._server.stdout], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired("warm_airflow.py", timeout)
        line = self._server.stdout.readline()
        if not line:
            raise RuntimeError(f"warm_airflow.py ended (exit code {self._server.wait()}); its stderr is above")
        return json.loads(line)

    def dags_test(self, dag_id: str, env: dict, logical_date: str = "2026-11-20", timeout: int = 240):
        """As ``dags_test``; a run that outlives ``timeout`` is killed and raises TimeoutExpired, as there."""
        argv = ["dags", "test", dag_id, logical_date]
        assert self._server.stdin is not None
        with tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch, "stdout"), Path(scratch, "stderr")
            self._server.stdin.write(json.dumps({"argv": argv, "env": env, "stdout": str(out),
                                                 "stderr": str(err)}) + "\n")
            self._server.stdin.flush()
            pid = self._answer(timeout=60)["pid"]
            try:
                code = self._answer(timeout)["returncode"]
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self._answer(timeout=60)
                raise subprocess.TimeoutExpired([AIRFLOW, *argv], timeout, out.read_text(), err.read_text()) from None
            return subprocess.CompletedProcess([AIRFLOW, *argv], code, out.read_text(), err.read_text())

    def close(self) -> None:
        if self._server.stdin is not None:
            self._server.stdin.close()
        self._server.wait(timeout=60)


def airflow(env: dict, *arguments: str, timeout: int = 240) -> str:
    """An `airflow` command that must succeed; its output."""
    result = subprocess.run([AIRFLOW, *arguments], env=env, capture_output=True, text=True, timeout=timeout,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(arguments)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


# What the scheduler does when a run fails, with Airflow's own classes: Airflow 3 hands the DAG's failure
# callback to the DAG processor through the metadata database; Airflow 2.11 on SQLite (no standalone DAG
# processor) starts a DagFileProcessorProcess with it, the child process that runs callbacks there, for a
# run that is in the database.
_HAND_OVER = """
import sys
import time
from pathlib import Path

import airflow
from airflow.callbacks.callback_requests import DagCallbackRequest

dag_id, run_id, dag_file = sys.argv[1:4]
common = {"dag_id": dag_id, "run_id": run_id, "msg": "task_failure", "is_failure_callback": True}
if airflow.__version__.startswith("2."):
    from airflow.dag_processing.processor import DagFileProcessorProcess
    from airflow.models.dagbag import DagBag
    from airflow.utils import timezone
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    folder = str(Path(dag_file).parent)
    dag = DagBag(dag_folder=dag_file, include_examples=False).get_dag(dag_id)
    dag.sync_to_db()
    day = timezone.datetime(2026, 11, 20)
    dag.create_dagrun(run_id=run_id, execution_date=day, data_interval=(day, day), state=DagRunState.FAILED,
                      run_type=DagRunType.SCHEDULED)  # Airflow 2 reads the run and its tasks for the context
    request = DagCallbackRequest(full_filepath=dag_file, processor_subdir=folder, **common)
    process = DagFileProcessorProcess(file_path=dag_file, pickle_dags=False, dag_ids=None, dag_directory=folder,
                                      callback_requests=[request])
    process.start()
    while not process.done:
        time.sleep(0.2)
else:
    from airflow.models.db_callback_request import DbCallbackRequest
    from airflow.utils.session import create_session

    request = DagCallbackRequest(filepath=Path(dag_file).name, bundle_name="dags-folder", bundle_version=None,
                                 **common)
    with create_session() as session:
        session.add(DbCallbackRequest(callback=request, priority_weight=1))
    print("HANDED-OVER")
"""


def dag_processor_callback(env: dict, dag_id: str, run_id: str, dag_file: Path, timeout: int = 240):
    """A DAG's failure callback run where a deployment runs it (see ``_HAND_OVER``); on Airflow 3 by
    `airflow dag-processor`, two parsing rounds (the callback is picked up at the end of the first).
    Returns the CompletedProcess of what ran it."""
    python = str(Path(AIRFLOW).parent / "python")
    handed = subprocess.run([python, "-c", _HAND_OVER, dag_id, run_id, str(dag_file)], env=env, capture_output=True,
                            text=True, timeout=timeout, check=False)
    if handed.returncode != 0 or "HANDED-OVER" not in handed.stdout:
        return handed
    env = {**env, "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "0"}  # parse again at once, not in 30 s
    return subprocess.run([AIRFLOW, "dag-processor", "--num-runs", "2"], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
