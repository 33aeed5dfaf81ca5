"""The emulator's own tests: plain HTTPS to the in-process emulator (the plugin's ``graph_emulator``), with
requests and, for the viewer, a browser. Nothing of any Graph client of ours."""

from __future__ import annotations

import pytest

pytest_plugins = ["browser"]


def pytest_terminal_summary(terminalreporter):
    """Say it loudly when the browser tests did not run: a green run without them proves less."""
    from browser import SKIP_PREFIX

    skipped = terminalreporter.stats.get("skipped", [])
    reasons = {str(report.longrepr[-1]).removeprefix("Skipped: ") for report in skipped
               if isinstance(report.longrepr, tuple) and SKIP_PREFIX in str(report.longrepr[-1])}
    for reason in sorted(reasons):
        terminalreporter.write_line(f"NOTE: {reason}", yellow=True, bold=True)


@pytest.fixture
def http(graph_emulator):
    """A plain requests session trusting the emulator's CA (and nothing from the environment)."""
    import requests

    session = requests.Session()
    session.verify = str(graph_emulator.ca_path)
    session.trust_env = False
    return session


@pytest.fixture
def graph(http, graph_emulator):
    """graph(method, path, **kw) with a valid app token, on /v1.0/users/{default sender}."""
    from graph_http import get_token

    token = get_token(http, graph_emulator).json()["access_token"]

    def call(method, path, *, user=None, version="v1.0", token_override=None, **kwargs):
        headers = kwargs.pop("headers", {})
        headers.setdefault("Authorization", f"Bearer {token_override or token}")
        prefix = f"/{version}/users/{user or graph_emulator.default_sender}" if user != "me" else f"/{version}/me"
        return http.request(method, graph_emulator.base_url + prefix + path, headers=headers, **kwargs)

    return call
