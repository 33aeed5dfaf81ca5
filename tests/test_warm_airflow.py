"""The warm runner (scripts/warm_airflow.py) that runs the tests' Airflow commands on Airflow 3: each run sees
its own environment and nothing of the one before, runs at once keep to their own homes, a run that would share
the server's database or logs is refused, and a run past its timeout, or whose caller is gone, is killed as
``subprocess.run`` would kill it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from airflow_env import airflow_env, migrate
from helpers import TEST_DAGS


@pytest.fixture
def warm(warm_airflow):
    if warm_airflow is None:
        pytest.skip("the warm runner is for Airflow 3 (GRAPH_MAIL_WARM_AIRFLOW=0 turns it off)")
    return warm_airflow


def test_each_run_has_its_own_environment_and_a_fresh_process(warm, airflow_home, tmp_path):
    seen = []
    for probe, level in (("first", "INFO"), ("second", "DEBUG")):
        env = airflow_env(airflow_home, None, TEST_DAGS, PROBE=probe, CASE_DIR=str(tmp_path),
                          AIRFLOW__LOGGING__LOGGING_LEVEL=level)
        result = warm.dags_test("warm_probe", env)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        seen.append(json.loads((tmp_path / "seen.json").read_text()))
    assert seen == [{"probe": "first", "runs": 1, "debug": False}, {"probe": "second", "runs": 1, "debug": True}]


@pytest.mark.parametrize("setting", ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__LOGGING__BASE_LOG_FOLDER"])
def test_a_run_without_its_own_database_or_logs_is_refused(warm, airflow_home, tmp_path, setting):
    env = airflow_env(airflow_home, None, TEST_DAGS, CASE_DIR=str(tmp_path))
    del env[setting]  # it would use the server's, which every run shares
    result = warm.dags_test("warm_probe", env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"must set its own {setting}" in result.stderr
    assert not (tmp_path / "started").exists()


def test_a_run_whose_caller_is_gone_is_killed(warm, airflow_home, tmp_path):
    """A test stopped or a worker gone closes its connection: the run goes too, it does not run on alone."""
    env = airflow_env(airflow_home, None, TEST_DAGS, CASE_DIR=str(tmp_path), PROBE_SLEEP="600")
    run = warm.popen(["dags", "test", "warm_probe", "2026-11-20"], env, os.devnull, os.devnull)
    for _ in range(1200):  # until its task sleeps
        if (tmp_path / "started").exists():
            break
        time.sleep(0.1)
    assert Path(f"/proc/{run.pid}").exists()
    run._connection.close()  # as a worker that died would
    for _ in range(600):
        if not Path(f"/proc/{run.pid}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{run.pid}").exists(), "the run outlived its caller"


def test_runs_at_once_each_keep_to_their_own_home(warm, airflow_template_home, tmp_path):
    """The test workers share one server: runs overlap, each in its own database and log folder."""
    homes = {name: tmp_path / name for name in ("first", "second")}
    results = {}

    def run(name: str) -> None:
        migrate(homes[name], template=airflow_template_home)
        (tmp_path / name / "case").mkdir()
        env = airflow_env(homes[name], None, TEST_DAGS, PROBE=name, CASE_DIR=str(tmp_path / name / "case"),
                          PROBE_SLEEP="2")
        results[name] = warm.dags_test("warm_probe", env)

    threads = [threading.Thread(target=run, args=(name,)) for name in homes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, home in homes.items():
        assert results[name].returncode == 0, (results[name].stdout + results[name].stderr)[-3000:]
        assert json.loads((home / "case" / "seen.json").read_text())["probe"] == name
        with sqlite3.connect(home / "airflow.db") as db:
            assert db.execute("SELECT dag_id, state FROM dag_run").fetchall() == [("warm_probe", "success")]
        assert (home / "logs").is_dir()  # its logging set up in its own home


def test_a_run_past_its_timeout_is_killed_and_the_runner_goes_on(warm, airflow_home, tmp_path):
    env = airflow_env(airflow_home, None, TEST_DAGS, CASE_DIR=str(tmp_path), PROBE_SLEEP="600")
    with pytest.raises(subprocess.TimeoutExpired):
        warm.dags_test("warm_probe", env, timeout=10)
    assert (tmp_path / "started").exists() and not (tmp_path / "seen.json").exists()  # killed inside its task
    env["PROBE_SLEEP"] = "0"
    assert warm.dags_test("warm_probe", env).returncode == 0
