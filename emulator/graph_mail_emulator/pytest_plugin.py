"""pytest fixtures, registered by the ``pytest11`` entry point of graph-mail-emulator (installing it is enough):
``graph_emulator`` runs the emulator in-process on a free port, emptied before each test;
``graph_microsoft_hosts`` also points login.microsoftonline.com and graph.microsoft.com at it, so that a
client runs with its defaults.

The emulator is imported when a fixture is first used, so that this plugin costs nothing to a pytest run
that does not use it.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def graph_emulator_session(tmp_path_factory):
    from graph_mail_emulator import EmulatorConfig, GraphEmulator, Network

    config = EmulatorConfig(tmp_path_factory.mktemp("graph-emulator"), network=Network(public_hosts=True))
    with GraphEmulator(config) as emulator:
        yield emulator


@pytest.fixture
def graph_emulator(graph_emulator_session):
    """The session's emulator, emptied before each test (mailboxes, messages, request log, faults, limits)."""
    graph_emulator_session.reset()
    yield graph_emulator_session


@pytest.fixture
def graph_microsoft_hosts(graph_emulator):
    """The emulator, answering as login.microsoftonline.com and graph.microsoft.com in this process, its CA
    trusted through REQUESTS_CA_BUNDLE and SSL_CERT_FILE."""
    from graph_mail_emulator.hosts import microsoft_hosts

    with microsoft_hosts(graph_emulator):
        yield graph_emulator
