"""The connection form as people see it: each credential's fields together, defaults shown, no "null" in a
drop-down. On Airflow 3 in Chromium against a real `airflow api-server` (its form groups fields by the
``section`` of each field's schema); on Airflow 2.11 as its web server builds the form (wtforms fields in the
hook's order), read in the second virtualenv.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import requests
from helpers import ROOT

from airflow_graph_mail.get_provider_info import EXTRAS

AIRFLOW2_PYTHON = ROOT / ".venv-airflow2" / "bin" / "python"
ARTIFACTS = ROOT / "test-artifacts"
DEFAULTS = {"max_message_size_mb": "35", "retry_max_wait": "300", "retry_backoff": "1", "timeout": "60",
            "delivery_guarantee": "exactly_once", "recipient_limit": "500", "daily_recipient_limit": "10000",
            "message_rate_limit": "30", "cloud": "global", "api_version": "v1.0", "tls_verify": "true",
            "certificate_send_x5c": "false"}
# Which fields belong together, in the order the form shows them.
TOGETHER = [("credential", "tenant_id"),
            ("certificate_path", "certificate_private_key", "certificate_passphrase", "certificate_thumbprint",
             "certificate_send_x5c"),
            ("federated_token_file",), ("refresh_token", "token_cache_path"),
            ("sender", "allowed_recipient_domains", "max_message_size_mb", "delivery_guarantee", "retry_max_wait",
             "retry_backoff"),
            ("recipient_limit", "daily_recipient_limit", "message_rate_limit"),
            ("cloud", "graph_url", "authority_url", "api_version", "scopes", "ca_bundle", "tls_verify", "proxies",
             "timeout")]


def check_form(form: dict) -> None:
    """What both Airflow lines must show: every field, in groups, each default, no "null" choice."""
    assert form["order"] == [name for group in TOGETHER for name in group] == list(EXTRAS)
    assert {name: form["extra"][name]["default"] for name in DEFAULTS} == DEFAULTS
    for name, field in form["extra"].items():
        assert "null" not in field["choices"], f"{name} offers 'null': {field['choices']}"


def test_the_form_on_this_airflow_keeps_each_credentials_fields_together():
    from connection_form import graph_mail_form

    form = graph_mail_form()
    check_form({**form, "order": list(form["extra"])})
    sections = [form["extra"][name]["section"] for name in form["extra"]]
    if sections[0] is not None:  # Airflow 3.2+: one section per group, each once, in order
        assert [s for n, s in enumerate(sections) if n == 0 or sections[n - 1] != s] == list(dict.fromkeys(sections))
        assert form["extra"]["credential"]["choices"][-1] == "(the one credential field that is set)"


@pytest.mark.integration  # starts a process
@pytest.mark.skipif(not AIRFLOW2_PYTHON.exists(), reason="no .venv-airflow2 (make test-airflow2 makes it)")
def test_the_airflow_2_form_keeps_each_credentials_fields_together_with_defaults():
    """Airflow 2.11's web server renders the hook's wtforms fields in their order, each default filled in."""
    out = subprocess.run([str(AIRFLOW2_PYTHON), str(ROOT / "scripts" / "connection_form.py")], capture_output=True,
                         text=True, check=True, timeout=120,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
                              "AIRFLOW_HOME": str(ROOT / ".venv-airflow2" / "airflow-home")}).stdout
    form = json.loads(out.split("CONNECTION-FORM ", 1)[1])
    assert form["extra"]["credential"]["section"] is None  # 2.x: wtforms fields, no sections
    check_form(form)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api_server(airflow_template_home, tmp_path):
    """Airflow 3's API server and UI, every visitor an admin (the simple auth manager's test mode)."""
    import airflow

    if airflow.__version__.startswith("2."):
        pytest.skip("Airflow 2 has no API server; its form is checked above")
    from airflow_env import AIRFLOW, airflow_env, migrate

    home = tmp_path / "airflow"
    migrate(home, template=airflow_template_home)
    port = free_port()
    env = airflow_env(home, None, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
                      AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager."
                                                  "SimpleAuthManager")
    log = (tmp_path / "api-server.log").open("w")
    server = subprocess.Popen([AIRFLOW, "api-server", "--port", str(port)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if requests.get(base + "/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert server.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
            time.sleep(0.5)
        yield base, env
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.integration  # starts Airflow's API server and a browser
def test_the_connection_form_in_chromium_on_airflow_3(api_server, warm_airflow):
    """Add a Graph Mail connection as a person would: the fields come in sections (each credential's together),
    the defaults are filled in, no drop-down says "null"; saved, it reads back as the defaults."""
    sys.path.insert(0, str(ROOT / "emulator" / "tests"))
    from browser import CHROMIUM, FLAGS, missing

    if missing():
        pytest.skip(missing())
    from playwright.sync_api import sync_playwright

    from airflow_graph_mail.graph.config import ConnectionFields, read_config

    base, env = api_server
    sections = list(dict.fromkeys(extra.section for extra in EXTRAS.values()))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(base + "/connections", wait_until="networkidle")
        page.get_by_role("button", name="Add Connection").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_role("combobox").first.focus()
        page.keyboard.type("Microsoft Graph Mail")
        page.keyboard.press("Enter")
        dialog.get_by_text(sections[0], exact=True).wait_for()
        assert [t for t in sections if dialog.get_by_text(t, exact=True).count() == 1] == sections
        shown: dict[str, str] = {}
        for title in sections:
            dialog.get_by_text(title, exact=True).click()
            page.wait_for_timeout(300)
            text = dialog.inner_text()
            assert "null" not in text.split(), f"{title}: {text}"
            values = page.evaluate("() => Object.fromEntries(Array.from(document.querySelectorAll("
                                   "'[role=dialog] input')).map(i => [i.name || i.id, i.value]))")
            for name, extra in EXTRAS.items():
                if extra.section == title:
                    assert extra.label in text, f"{extra.label} is not under {title}"
                    shown[name] = values.get(f"element_{name}", "")
            if title == sections[0]:
                assert "(the one credential field that is set)" in text
                page.locator("#element_tenant_id").fill("00000000-0000-0000-0000-000000000001")
            if title == "Sending":
                page.locator("#element_sender").fill("reports@contoso.com")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "connection-form-airflow3.png"), full_page=True)
        assert {name: shown[name] for name in DEFAULTS} == DEFAULTS
        dialog.get_by_role("textbox").first.fill("graph_mail_form")  # Connection ID
        dialog.get_by_text("Standard Fields", exact=True).click()
        page.get_by_placeholder("application (client) id").fill("11111111-2222-3333-4444-555555555555")
        page.get_by_placeholder("client secret value (leave empty for other credentials)").fill("form-secret")
        dialog.get_by_role("button", name="Save").click()
        page.wait_for_timeout(1500)
        browser.close()
    from airflow_env import airflow

    saved = json.loads(airflow(env, "connections", "get", "graph_mail_form", "--output", "json",
                               runner=warm_airflow))[0]
    # the CLI prints the extra parsed (extra_dejson) on newer Airflow, as stored text (extra) on older
    extra = saved["extra_dejson"] if "extra_dejson" in saved else json.loads(saved.get("extra") or "{}")
    config = read_config(ConnectionFields("graph_mail_form", saved["conn_type"], saved["login"], "form-secret",
                                          extra=extra))
    assert (config.limits.recipients_per_message, config.limits.recipients_per_day, config.delivery_guarantee,
            config.timeout, config.sender) == (500, 10_000, "exactly_once", 60.0, "reports@contoso.com")
    assert config.credential.kind == "secret" and config.verify is True
