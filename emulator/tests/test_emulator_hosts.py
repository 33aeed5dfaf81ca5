"""Microsoft's host names pointed at the emulator: only inside the context, only those names and port 443,
with a CA that may vouch for the emulator's names alone; and the pytest plugin in a project without
Airflow."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest
from cryptography import x509

from graph_mail_emulator import GraphEmulator
from graph_mail_emulator.hosts import microsoft_hosts, redirect_hosts


def test_names_resolve_to_the_emulator_only_inside(graph_emulator):
    before = socket.getaddrinfo("localhost", 443)
    with microsoft_hosts(graph_emulator):
        inside = socket.getaddrinfo("graph.microsoft.com", 443, type=socket.SOCK_STREAM)
        with socket.create_connection(("graph.microsoft.com", 443), timeout=5):
            pass  # reached the emulator's port
        assert socket.getaddrinfo("localhost", 443) == before  # other names untouched
        assert socket.getaddrinfo("GRAPH.microsoft.com.", "https", type=socket.SOCK_STREAM) == inside
    assert socket.getaddrinfo is not None and socket.getaddrinfo.__module__ == "socket"
    assert socket.socket.connect.__qualname__ != "_connect"


def test_redirects_nest_and_unwind(graph_emulator):
    with redirect_hosts("127.0.0.1", graph_emulator.site.port, names=("one.example",)):
        with redirect_hosts("127.0.0.1", graph_emulator.site.port, names=("two.example",)):
            socket.create_connection(("one.example", 443), timeout=5).close()
            socket.create_connection(("two.example", 443), timeout=5).close()
        socket.create_connection(("one.example", 443), timeout=5).close()
        with pytest.raises(OSError):
            socket.getaddrinfo("two.example", 443)
    assert socket.getaddrinfo.__module__ == "socket"


def test_an_emulator_without_public_hosts_refuses_to_pose(tmp_path):
    with GraphEmulator(tmp_path) as emulator, pytest.raises(ValueError, match="public_hosts=True"), \
            microsoft_hosts(emulator):
        pass


def test_the_ca_may_vouch_for_the_emulators_names_only(graph_emulator):
    ca = x509.load_pem_x509_certificate(graph_emulator.ca_path.read_bytes())
    permitted = ca.extensions.get_extension_for_class(x509.NameConstraints).value.permitted_subtrees
    names = {str(getattr(n, "value", n)) for n in permitted}
    assert {"graph.microsoft.com", "login.microsoftonline.com", "outlook.office.com", "localhost"} <= names
    assert not any(name in ("com", "microsoft.com") for name in names)


def test_the_pytest_plugin_serves_a_project_without_airflow(tmp_path):
    """Another project's tests: the plugin's fixture (its entry point registers it: no conftest.py), stdlib
    HTTPS only, Microsoft's own URLs."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_mail.py").write_text(textwrap.dedent('''
        import json, sys, urllib.parse, urllib.request

        def post(url, data, headers):
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(request) as answer:
                return answer.status, answer.read()

        def test_send(graph_microsoft_hosts):
            emu = graph_microsoft_hosts
            app = emu.entra.default_app
            form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": app.client_id,
                                           "client_secret": next(iter(app.secrets)),
                                           "scope": "https://graph.microsoft.com/.default"}).encode()
            _, body = post(f"https://login.microsoftonline.com/{emu.entra.tenant_id}/oauth2/v2.0/token", form, {})
            token = json.loads(body)["access_token"]
            message = {"message": {"subject": "from another project",
                                   "toRecipients": [{"emailAddress": {"address": "ann@fabrikam.com"}}]}}
            status, _ = post(f"https://graph.microsoft.com/v1.0/users/{emu.default_sender}/sendMail",
                             json.dumps(message).encode(),
                             {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            assert status == 202
            assert [m["subject"] for m in emu.inspect.messages("ann@fabrikam.com")] == ["from another project"]
            assert "airflow" not in sys.modules and "airflow_graph_mail" not in sys.modules
    '''))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_host_name_mode_keeps_what_the_process_trusted(graph_emulator, tmp_path, monkeypatch):
    """A corporate CA trusted through SSL_CERT_FILE and REQUESTS_CA_BUNDLE stays trusted inside
    microsoft_hosts(): the bundle it installs adds the emulator's CA to what was trusted, never replaces it."""
    import ssl
    import urllib.request

    import requests

    with GraphEmulator(tmp_path / "corporate") as corporate:  # a host only the corporate CA vouches for
        monkeypatch.setenv("SSL_CERT_FILE", str(corporate.ca_path))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(corporate.ca_path))
        internal = f"{corporate.base_url}/_viewer/version"
        with microsoft_hosts(graph_emulator):
            assert requests.get(internal, timeout=10).status_code == 200
            with urllib.request.urlopen(internal, context=ssl.create_default_context(), timeout=10) as answer:
                assert answer.status == 200
            assert requests.get(f"https://graph.microsoft.com/v1.0/users/{graph_emulator.default_sender}/messages",
                                timeout=10).status_code == 401  # the emulator, trusted, asking for a token
        import os

        assert os.environ["SSL_CERT_FILE"] == os.environ["REQUESTS_CA_BUNDLE"] == str(corporate.ca_path)
