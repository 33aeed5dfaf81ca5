"""No secret we handle appears in any log line at any level, nor in XCom or rendered fields.

One kind of line is Airflow's own and is left out: ``airflow dags test`` runs tasks with an in-process
supervisor whose DEBUG log prints each request a task makes, including the one that hands a secret to
Airflow's masker (``msg=MaskSecret(value=...)``; Airflow sends the connection's own fields that way too).
A worker talks to its supervisor over a socket and prints no such line.
"""

from __future__ import annotations

import json
import re

from helpers import TEST_DAGS, make_certificate

DAGS = TEST_DAGS
AIRFLOW_TEST_SUPERVISOR = re.compile(r"Sending request\s.*loc=supervisor\.py:\d+ msg=MaskSecret\(")


def test_a_debug_level_run_leaks_no_secret(run_dag, graph_emulator, airflow_home, tmp_path):
    secret_connection = graph_emulator.connection()
    bundle, cert = make_certificate(passphrase=b"pem-pass-D3bug")
    cert_app = graph_emulator.entra.add_app(certificate_pem=cert)
    certificate = {**secret_connection, "login": cert_app.client_id, "password": None,
                   "extra": {**secret_connection["extra"], "certificate_private_key": bundle.decode(),
                             "certificate_passphrase": "pem-pass-D3bug"}}
    graph_emulator.backend.store.add_user("carol.bot@contoso.com", "Carol's bot")
    public_app = graph_emulator.entra.add_app(public_client=True)
    refresh_token = graph_emulator.entra.issue_refresh_token("carol.bot@contoso.com", public_app)
    delegated = {**secret_connection, "login": public_app.client_id, "password": None,
                 "extra": {**secret_connection["extra"], "refresh_token": refresh_token, "sender": None}}

    result = run_dag("graph_mail_debug_secrets", DAGS, CASE_DIR=str(tmp_path),
                     AIRFLOW__LOGGING__LOGGING_LEVEL="DEBUG",
                     AIRFLOW_CONN_GRAPH_MAIL_CERT=json.dumps(certificate),
                     AIRFLOW_CONN_GRAPH_MAIL_DELEGATED=json.dumps(delegated))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1 and graph_emulator.backend.uploads.issued_tokens

    home = airflow_home
    every_line = (output + "".join(p.read_text(errors="replace") for p in home.rglob("*.log"))).splitlines()
    # DEBUG really was on, urllib3's request lines included (Airflow 3 prints task logs, Airflow 2 files them)
    assert any("connectionpool" in line and "DEBUG" in line.upper() for line in every_line)
    logs = "\n".join(line for line in every_line if not AIRFLOW_TEST_SUPERVISOR.search(line))
    database = (home / "airflow.db").read_bytes()  # XCom values and rendered fields live there
    key_lines = [line for line in bundle.decode().splitlines() if line and not line.startswith("-----")]
    grants = graph_emulator.entra.directory.refresh_tokens.items()
    rotated = [t for t, g in grants if g.client_id == public_app.client_id]
    secrets = {"client secret": secret_connection["password"], "private key": key_lines[1],
               "passphrase": "pem-pass-D3bug", "refresh token": refresh_token,
               **{f"rotated refresh token {i}": t for i, t in enumerate(rotated)},
               **{f"access token {i}": t for i, t in enumerate(graph_emulator.entra.issuer.issued)},
               **{f"upload URL token {i}": t for i, t in enumerate(graph_emulator.backend.uploads.issued_tokens)}}
    assert len(secrets) >= 8
    assert [name for name, value in secrets.items() if value in logs] == []
    assert [name for name, value in secrets.items() if value.encode() in database] == []
    assert "authtoken=***" in logs or "authtoken" not in logs
