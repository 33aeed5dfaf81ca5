"""Provider metadata and the cost of importing our operator module in a DAG file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_graph_mail.get_provider_info import get_provider_info

# What a DAG file imports before ours: the task SDK on Airflow 3, the decorators on Airflow 2.
SDK = "airflow.sdk" if airflow.__version__ >= "3" else "airflow.decorators"


def test_provider_info_matches_airflow_schemas():
    schemas = Path(airflow.__file__).parent
    info = get_provider_info()
    jsonschema.validate(info, json.loads((schemas / "provider_info.schema.json").read_text()))
    yaml_schema = json.loads((schemas / "provider.yaml.schema.json").read_text())
    for connection_type in info["connection-types"]:
        jsonschema.validate(connection_type, yaml_schema["properties"]["connection-types"]["items"])
    from importlib.metadata import distribution

    assert info["package-name"] == distribution("airflow-graph-mail").metadata["Name"]


def test_airflow_lists_the_provider_and_connection_type(airflow_home, warm_airflow):
    from airflow_env import airflow, airflow_env

    env = airflow_env(airflow_home, None)
    providers = airflow(env, "providers", "list", runner=warm_airflow)
    assert re.search(r"^airflow-graph-mail +\| Send and receive Outlook mail", providers, re.M), providers
    hooks = airflow(env, "providers", "hooks", runner=warm_airflow)
    assert re.search(r"^graphmail +\| airflow_graph_mail\.hooks\.graph_mail\.GraphMailHook +\|", hooks, re.M), hooks


@pytest.mark.integration  # starts processes
def test_importing_the_operators_stays_cheap():
    code = (f"import sys, {SDK}; before = set(sys.modules); "
            "import airflow_graph_mail.operators.graph_mail, airflow_graph_mail.operators.mail_merge; "
            "added = set(sys.modules) - before; "
            "heavy = sorted(m for m in added if m.split('.')[0] in ('msal', 'requests', 'cryptography') "
            "or m.startswith('graph_mail_emulator')); "
            "print(heavy, len(added))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    heavy, added = out.rsplit(" ", 1)
    assert heavy == "[]", heavy
    assert int(added) < 40, added


def test_importing_the_package_loads_only_the_error_tree():
    """Airflow imports the package in every process (provider discovery): its public names load when first
    asked for, so importing it pulls in no operator, hook, sensor, notifier, client, msal or requests."""
    code = ("import sys; before = set(sys.modules); import airflow_graph_mail; added = set(sys.modules) - before; "
            "print(sorted(m for m in added if m.split('.')[0] in ('airflow', 'msal', 'requests', 'urllib3', "
            "'jinja2', 'fsspec') or m.startswith('airflow_graph_mail.') and m not in ('airflow_graph_mail.errors', "
            "'airflow_graph_mail.outcomes', 'airflow_graph_mail.redact')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
    import airflow_graph_mail

    for name in airflow_graph_mail.__all__:  # every public name is there, each from its one module
        assert getattr(airflow_graph_mail, name), name
    assert airflow_graph_mail.GraphSendMailOperator.__module__ == "airflow_graph_mail.operators.graph_mail"


def test_every_connection_field_is_explained_and_secrets_are_masked():
    try:
        from airflow.sdk._shared.secrets_masker.secrets_masker import should_hide_value_for_key
    except ImportError:  # Airflow 2.11
        from airflow.utils.log.secrets_masker import should_hide_value_for_key  # type: ignore[no-redef]

    connection = get_provider_info()["connection-types"][0]
    behaviour = connection["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"host", "schema", "port", "extra"}
    for name, spec in connection["conn-fields"].items():
        assert spec["label"] and len(spec["description"]) > 20, name
        assert behaviour["placeholders"].get(name), f"{name} has no placeholder"
        secret = spec["schema"].get("format") == "password"
        assert not secret or should_hide_value_for_key(name), f"{name} is a secret Airflow would not mask"
    for name in ("certificate_private_key", "certificate_passphrase", "refresh_token"):
        assert connection["conn-fields"][name]["schema"]["format"] == "password"


@pytest.mark.integration  # starts processes
def test_notifier_and_email_backend_are_registered_and_cheap_to_import():
    info = get_provider_info()
    assert info["email-backends"] == ["airflow_graph_mail.email_backend.send_email"]
    code = (f"import sys, {SDK}; before = set(sys.modules); "
            "import airflow_graph_mail.notifications.graph_mail, airflow_graph_mail.email_backend; "
            "from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier; "
            "from airflow_graph_mail.email_backend import send_email; "
            "added = set(sys.modules) - before; "
            "print(sorted(m for m in added if m.split('.')[0] in ('msal', 'requests', 'cryptography')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"
    for path in info["notifications"]:
        module, name = path.rsplit(".", 1)
        assert getattr(__import__(module, fromlist=[name]), name)


def test_the_connection_form_shows_every_field():
    """On this Airflow, as its UI builds the form: every extra labelled, secrets as password fields, the
    login and password relabelled, host/schema/port hidden (3.2+ from provider info, older from the hook)."""
    from connection_form import graph_mail_form

    from airflow_graph_mail.get_provider_info import EXTRAS, PLACEHOLDERS

    form = graph_mail_form()
    assert {name: field["label"] for name, field in form["extra"].items()} == \
        {name: extra.label for name, extra in EXTRAS.items()}
    assert {name for name, field in form["extra"].items() if field["secret"]} == \
        {"certificate_private_key", "certificate_passphrase", "refresh_token"}
    assert (form["login"], form["password"]) == ("Client ID", "Client secret")
    assert set(form["hidden"]) == {"host", "url_schema", "port"}
    assert form["placeholders"]["login"] == PLACEHOLDERS["login"]


def test_the_metadata_points_at_the_docs_source_changelog_and_issues():
    """Both distributions' [project.urls] name the four places (the wheel's Project-URLs); the provider's
    documentation-url is the same Documentation URL, which Airflow shows in its providers list."""
    import re

    root = Path(__file__).parent.parent
    for pyproject in (root / "pyproject.toml", root / "emulator" / "pyproject.toml"):
        section = pyproject.read_text().split("\n[project.urls]\n", 1)[1].split("\n[", 1)[0]
        urls = dict(re.findall(r'^(\w+) = "(https://[^"]+)"$', section, re.MULTILINE))
        assert set(urls) == {"Documentation", "Source", "Changelog", "Issues"}, pyproject
        if pyproject.parent == root:
            assert get_provider_info()["documentation-url"] == urls["Documentation"]


def test_the_version_is_written_once():
    """pyproject.toml holds it; the package and the provider metadata read it from what pip installed."""
    import re
    from importlib.metadata import version

    import airflow_graph_mail

    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    version_line = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert version_line, "pyproject.toml declares no version"
    declared = version_line.group(1)
    assert airflow_graph_mail.__version__ == version("airflow-graph-mail") == declared
    assert get_provider_info()["versions"] == [declared]
