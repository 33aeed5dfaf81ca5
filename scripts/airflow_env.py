"""Run DAGs with `airflow dags test` in a throw-away AIRFLOW_HOME (used by `make demo` and the tests)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def airflow_env(home: Path, connection: dict | None, dags_folder: Path = ROOT / "example_dags", **extra: str) -> dict:
    """Environment for a private Airflow: its own home and SQLite DB, our DAGs, the emulator's connection
    (none in the environment with ``connection=None``: see ``store_connection``).

    The database, the logs and the Fernet key are named here, not left to the home's airflow.cfg: a warm run
    (``WarmAirflow``) reads the configuration of the server's home, and must still use this home's database and
    logs, and decrypt what an `airflow` command in this home stored. The key is this home's, derived from its
    path: a throw-away home's, never a secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(hashlib.sha256(str(home).encode()).digest()).decode(),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        **({"AIRFLOW_CONN_GRAPH_MAIL_DEFAULT": json.dumps(connection)} if connection is not None else {}),
        **extra,
    })
    return env


def store_connection(env: dict, conn_id: str, connection: dict, runner: WarmAirflow | None = None) -> str:
    """`airflow connections add`: the connection in the metadata database, as README sets it up."""
    return airflow(env, "connections", "add", conn_id, "--conn-json", json.dumps(connection), runner=runner)


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
    """`airflow` commands run by ``warm_airflow.py``'s server: each run a fork of one process that started
    Airflow once (on Airflow 3, most of a run's time); the same command, arguments and environment."""

    def __init__(self, name: str, log: Path):
        self.name, self.log = name, log

    @classmethod
    def start(cls, home: Path, name: str, watched: int, log: Path) -> WarmAirflow:
        """Start the server with its configuration in ``home``, listening on the abstract Unix socket ``name``,
        until process ``watched`` ends; ready when this returns. Its own output goes to ``log``."""
        python = str(Path(AIRFLOW).parent / "python")
        with log.open("ab") as errors:
            server = subprocess.Popen([python, str(ROOT / "scripts" / "warm_airflow.py"), name, str(watched)],
                                      env=airflow_env(home, None), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=errors, start_new_session=True)
        _SERVERS.append(server)  # it outlives this call: kept, not collected while it runs
        assert server.stdout is not None
        with server.stdout:
            ready = select.select([server.stdout], [], [], 300)[0] and server.stdout.readline()
        if not ready:
            server.kill()
            raise RuntimeError(f"warm_airflow.py did not start (exit code {server.wait()}); its output: {log}")
        return cls(name, log)

    def popen(self, argv: list[str], env: dict, stdout: str, stderr: str) -> WarmRun:
        """An `airflow` command started, not waited for: for a run the caller stops itself."""
        return WarmRun(self, argv, env, stdout, stderr)

    def dags_test(self, dag_id: str, env: dict, logical_date: str = "2026-11-20", timeout: int = 240):
        """As ``dags_test``."""
        return self.run(["dags", "test", dag_id, logical_date], env, timeout)

    def run(self, argv: list[str], env: dict, timeout: int = 240) -> subprocess.CompletedProcess:
        """As ``subprocess.run([AIRFLOW, *argv], env=env, capture_output=True, text=True, timeout=timeout)``: a
        run that outlives ``timeout`` is killed and raises TimeoutExpired, and so is one whose caller stops."""
        with tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch, "stdout"), Path(scratch, "stderr")
            run = self.popen(argv, env, str(out), str(err))
            try:
                code = run.wait(timeout)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait(timeout=60)
                raise subprocess.TimeoutExpired(run.args, timeout, out.read_text(), err.read_text()) from None
            except BaseException:  # the test stopped another way (its own timeout, Ctrl-C): the run with it
                run.kill()
                raise
            return subprocess.CompletedProcess(run.args, code, out.read_text(), err.read_text())


_SERVERS: list[subprocess.Popen] = []


class WarmRun:
    """One run of the warm server under way, as much of ``subprocess.Popen`` as the tests use: ``args``,
    ``pid``, ``poll()``, ``wait()``, ``kill()``."""

    def __init__(self, server: WarmAirflow, argv: list[str], env: dict, stdout: str, stderr: str):
        self.args = [AIRFLOW, *argv]
        self.returncode: int | None = None
        self._log = server.log
        self._connection = socket.socket(socket.AF_UNIX)
        try:
            self._connection.connect("\0" + server.name)
        except OSError as err:
            self._connection.close()
            raise RuntimeError(f"the warm Airflow server is gone ({err}); its log: {server.log}") from None
        self._connection.sendall(json.dumps({"argv": argv, "env": env, "stdout": stdout, "stderr": stderr})
                                 .encode() + b"\n")
        self._buffer = b""
        self.pid = self._answer(timeout=60)["pid"]

    def _answer(self, timeout: float | None) -> dict:
        """The server's next JSON line; TimeoutError if none comes within ``timeout`` seconds."""
        self._connection.settimeout(timeout)
        while b"\n" not in self._buffer:
            chunk = self._connection.recv(4096)
            if not chunk:
                raise RuntimeError(f"the warm Airflow server closed the connection without an answer; its log: "
                                   f"{self._log}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                self.returncode = self._answer(timeout)["returncode"]
            except (TimeoutError, BlockingIOError):  # BlockingIOError: timeout 0, as poll() asks
                raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
            self._connection.close()
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(timeout=0)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """The server kills the run (it knows when the pid is still the run's; a pid reused would not be)."""
        if self.returncode is None:
            with contextlib.suppress(OSError):  # the run ended and the server closed the connection
                self._connection.sendall(b"kill\n")


def airflow(env: dict, *arguments: str, timeout: int = 240, runner: WarmAirflow | None = None) -> str:
    """An `airflow` command that must succeed; its output. Run by ``runner`` (a fork of its warm process) if
    given, else as a process of its own."""
    if runner is not None:
        result = runner.run(list(arguments), env, timeout)
    else:
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
