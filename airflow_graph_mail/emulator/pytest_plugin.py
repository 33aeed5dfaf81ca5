"""pytest fixtures: ``graph_emulator`` runs the emulator in-process on a free port for one test;
``graph_microsoft_hosts`` also points login.microsoftonline.com and graph.microsoft.com at it, so that a
client runs with its defaults. Needs neither Airflow nor anything of this provider beyond the emulator.

Enable with ``pytest_plugins = ["airflow_graph_mail.emulator.pytest_plugin"]`` in a conftest.py.
"""

from __future__ import annotations

import pytest

from airflow_graph_mail.emulator.hosts import microsoft_hosts
from airflow_graph_mail.emulator.server import GraphEmulator


@pytest.fixture(scope="session")
def graph_emulator_session(tmp_path_factory):
    with GraphEmulator(tmp_path_factory.mktemp("graph-emulator"), public_hosts=True) as emulator:
        yield emulator


@pytest.fixture
def graph_emulator(graph_emulator_session):
    """The session's emulator, emptied before each test (mailboxes, messages, request log)."""
    graph_emulator_session.reset()
    yield graph_emulator_session


@pytest.fixture
def graph_microsoft_hosts(graph_emulator):
    """The emulator, answering as login.microsoftonline.com and graph.microsoft.com in this process, its CA
    trusted through REQUESTS_CA_BUNDLE and SSL_CERT_FILE."""
    with microsoft_hosts(graph_emulator):
        yield graph_emulator
