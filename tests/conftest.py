"""Shared fixtures: a hook wired to the in-process emulator (``graph_emulator``, from graph-mail-emulator's
pytest plugin), and a migrated Airflow home."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


# A test that asks for one of these talks to the emulator or runs Airflow; every other test is a unit test of
# a pure module (``make test-unit`` runs those alone, in seconds). A test that starts either some other way is
# marked ``integration`` by hand; under ``make test-unit`` starting one fails the test, so a wrong guess shows.
_INTEGRATION_FIXTURES = {"graph_emulator", "graph_emulator_session", "graph_microsoft_hosts", "connect", "hook",
                         "http", "run_dag", "dags_test", "airflow_home", "warm_airflow",
                         "airflow_template_home"}
UNIT_ONLY = os.environ.get("GRAPH_MAIL_UNIT_ONLY") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "unit: a pure module's test (no emulator, no Airflow run); set by conftest")
    config.addinivalue_line("markers", "integration: talks to the emulator or runs Airflow without saying so by "
                                       "its fixtures")
    config.addinivalue_line("markers", "longest: runs first, so the rest of the suite fits beside it")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """Two workers per CPU this process may use (PYTEST_XDIST_AUTO_NUM_WORKERS wins): much of the suite's time
    is spent waiting (DAG runs starting, deployments polling), not computing."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own reading of it
    return 2 * len(os.sched_getaffinity(0))


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("integration") is None and not _INTEGRATION_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.unit)
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def unit_tests_stay_unit(monkeypatch):
    """Under ``make test-unit``: starting the emulator or an Airflow command is a misfiled test, said loudly."""
    if not UNIT_ONLY:
        return

    def refuse(*args, **kwargs):
        raise AssertionError("a unit test started the emulator or an Airflow command: mark it integration")

    import airflow_env
    from graph_mail_emulator import GraphEmulator

    monkeypatch.setattr(GraphEmulator, "start", refuse)
    for name in ("dags_test", "migrate", "airflow"):
        monkeypatch.setattr(airflow_env, name, refuse)
    for name in ("start", "popen", "dags_test"):
        monkeypatch.setattr(airflow_env.WarmAirflow, name, refuse)


@pytest.fixture(autouse=True)
def fresh_credentials():
    """Credentials and the triggers' clients are shared process-wide; each test starts without them (no cached
    token, no kept-alive connection), as a new process would."""
    from airflow_graph_mail.graph.auth import forget_shared
    from airflow_graph_mail.triggers.pool import forget_clients

    forget_shared()
    forget_clients()
    forget_masked_secrets()


def forget_masked_secrets() -> None:
    """Airflow's log masker keeps every secret a process masked and compiles them into one regex again at each
    new one; a worker running hundreds of tests (each masking its fresh tokens) made that quadratic: minutes of
    CPU. Each test starts with the masker a new process has."""
    import importlib

    for name in ("airflow.sdk._shared.secrets_masker.secrets_masker", "airflow._shared.secrets_masker.secrets_masker",
                 "airflow.sdk.execution_time.secrets_masker", "airflow.utils.log.secrets_masker"):
        try:  # where each Airflow keeps it: 2.x the last, 3.0-3.2 the last two, 3.3 the first two
            masker = importlib.import_module(name)._secrets_masker()
        except (ImportError, AttributeError, RuntimeError):  # RuntimeError: 2.x's logging has no masker set up
            continue
        masker.patterns, masker.replacer = set(), None  # what 3.3's reset_masker() does; 2.x has no such method


@pytest.fixture
def connect(graph_emulator, monkeypatch):
    """connect(conn_id="graph_mail_default", **changes) -> GraphMailHook on the emulator's connection."""
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    def _connect(conn_id: str = "graph_mail_default", *, extra: dict | None = None, **fields):
        conn = graph_emulator.connection()
        conn.update(fields)
        conn["extra"] = {k: v for k, v in {**conn["extra"], **(extra or {})}.items() if v is not None}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return GraphMailHook(graph_mail_conn_id=conn_id)

    return _connect


@pytest.fixture
def http(graph_emulator):
    """A plain requests session trusting the emulator's CA (and nothing from the environment)."""
    import requests

    session = requests.Session()
    session.verify = str(graph_emulator.ca_path)
    session.trust_env = False
    return session


@pytest.fixture
def hook(connect):
    return connect()


@contextmanager
def run_lock(tmp_path_factory, worker_id, name: str):
    """The run's folder (shared by its xdist workers), held under the lock ``name``: one worker at a time."""
    import fcntl

    run_dir = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # each xdist worker has its own folder in the run's
        run_dir = run_dir.parent
    with (run_dir / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield run_dir


@pytest.fixture(scope="session")
def airflow_template_home(tmp_path_factory, worker_id):
    """One migrated metadata DB for the whole run, copied into each test's own AIRFLOW_HOME: the first test
    worker to need it migrates (about 6 CPU seconds), the others wait for it on a lock."""
    from airflow_env import migrate

    with run_lock(tmp_path_factory, worker_id, "airflow-template") as run_dir:
        home = run_dir / "airflow-template"
        if not home.exists():
            scratch = run_dir / f"airflow-template-{os.getpid()}"
            migrate(scratch)
            scratch.rename(home)  # whole or not at all: a failed migration leaves no template behind
    return home


@pytest.fixture(scope="session")
def warm_airflow(airflow_template_home, tmp_path_factory, worker_id):
    """On Airflow 3, ``run_dag``'s runs are forks of one process for the whole run that started Airflow once
    (scripts/warm_airflow.py): the first worker to need it starts it (~16 CPU seconds), the others use it; it
    ends with the run. GRAPH_MAIL_WARM_AIRFLOW=0 runs each as a process of its own. None on Airflow 2, where a
    `dags test` starts in seconds."""
    from importlib.metadata import version

    from airflow_env import WarmAirflow, migrate

    if version("apache-airflow").startswith("2.") or os.environ.get("GRAPH_MAIL_WARM_AIRFLOW") == "0":
        return None
    with run_lock(tmp_path_factory, worker_id, "airflow-warm") as run_dir:
        started, log = run_dir / "airflow-warm.json", run_dir / "airflow-warm.log"
        if not started.exists():
            home = run_dir / "airflow-warm"
            migrate(home, template=airflow_template_home)
            name = f"graph-mail-warm-airflow-{os.getpid()}-{time.time_ns()}"
            test_run = os.getppid() if worker_id != "master" else os.getpid()  # xdist's controller, or this
            WarmAirflow.start(home, name, test_run, log=log)
            started.write_text(json.dumps({"name": name}))
        return WarmAirflow(json.loads(started.read_text())["name"], log=log)


@pytest.fixture
def airflow_home(airflow_template_home, tmp_path):
    """The AIRFLOW_HOME of this test's ``run_dag`` runs, its database a copy of the migrated template."""
    from airflow_env import migrate

    home = tmp_path / "airflow"
    migrate(home, template=airflow_template_home)
    return home


@pytest.fixture
def dags_test(warm_airflow):
    """dags_test(dag_id, env, ...) -> `airflow dags test` as ``airflow_env.dags_test`` runs it, warm where it
    can be (env from ``airflow_env``, which names the run's own database and log folder)."""
    from airflow_env import dags_test

    return dags_test if warm_airflow is None else warm_airflow.dags_test


@pytest.fixture
def run_dag(airflow_home, dags_test, graph_emulator, tmp_path):
    """run_dag(dag_id, dags_folder=..., connection_extra=..., connection=..., **env) -> `airflow dags test`
    against the emulator, in ``airflow_home``; ``connection`` replaces graph_mail_default (default: the
    emulator's app secret)."""
    from airflow_env import airflow_env

    def _run(dag_id: str, dags_folder: Path = ROOT / "example_dags", connection_extra: dict | None = None,
             timeout: int = 240, connection: dict | None = None, **env):
        connection = connection or graph_emulator.connection()
        connection["extra"].update(connection_extra or {})
        environment = airflow_env(airflow_home, connection, dags_folder, REPORT_OUTPUT_DIR=str(tmp_path / "reports"),
                                  **env)
        return dags_test(dag_id, environment, timeout=timeout)

    return _run
