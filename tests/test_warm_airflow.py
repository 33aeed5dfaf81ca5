"""The warm runner (scripts/warm_airflow.py) that runs the tests' `airflow dags test` on Airflow 3: each run
sees its own environment and nothing of the one before, a wrong AIRFLOW_HOME is refused, and a run past its
timeout is killed as ``subprocess.run`` would kill it."""

from __future__ import annotations

import json
import subprocess

import pytest
from airflow_env import airflow_env
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


def test_another_airflow_home_is_refused(warm, tmp_path):
    env = airflow_env(tmp_path / "elsewhere", None, TEST_DAGS, CASE_DIR=str(tmp_path))
    result = warm.dags_test("warm_probe", env)
    assert result.returncode == 2 and f"AIRFLOW_HOME must be {warm.home}" in result.stderr
    assert not (tmp_path / "seen.json").exists()


def test_a_run_past_its_timeout_is_killed_and_the_runner_goes_on(warm, airflow_home, tmp_path):
    env = airflow_env(airflow_home, None, TEST_DAGS, CASE_DIR=str(tmp_path), PROBE_SLEEP="600")
    with pytest.raises(subprocess.TimeoutExpired):
        warm.dags_test("warm_probe", env, timeout=10)
    assert (tmp_path / "started").exists() and not (tmp_path / "seen.json").exists()  # killed inside its task
    env["PROBE_SLEEP"] = "0"
    assert warm.dags_test("warm_probe", env).returncode == 0
