"""pytest fixtures: ``graph_emulator`` runs the emulator in-process on a free port for one test.

Enable with ``pytest_plugins = ["airflow_graph_mail.emulator.pytest_plugin"]`` in a conftest.py.
"""

from __future__ import annotations

import pytest

from airflow_graph_mail.emulator.server import GraphEmulator


@pytest.fixture(scope="session")
def graph_emulator_session(tmp_path_factory):
    with GraphEmulator(tmp_path_factory.mktemp("graph-emulator")) as emulator:
        yield emulator


@pytest.fixture
def graph_emulator(graph_emulator_session):
    """The session's emulator, emptied before each test (mailboxes, messages, request log)."""
    graph_emulator_session.reset()
    yield graph_emulator_session
