"""The documentation site shows no code of its own: every block on a docs/ page is a file included whole or in
part, and this module runs those files (or names the test that does): the connection examples sign in to the
emulator, the tenant scripts run (openssl for real, az as a stand-in that checks each call), the migration's
before/after DAGs and [email] settings deliver the same mail through SMTP and through Graph, the install
script meets a stand-in pip, the getting-started scripts deliver a mail, and the emulator's README, which its
pages include, has each of its commands and snippets run."""

from __future__ import annotations

import configparser
import email
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import urllib.request
from email import policy
from importlib import import_module
from importlib.metadata import version
from pathlib import Path

import pytest
from helpers import ROOT

DOCS = ROOT / "docs"
EXAMPLES = ROOT / "example_dags" / "docs"
CONNECTIONS = EXAMPLES / "connections"
TENANT = EXAMPLES / "tenant"
DAY = "2026-11-20"
# Who the migration's report goes to: users of the tenant, or Exchange (and the emulator) would bounce them.
PEOPLE = ("reports@contoso.com", "ann@contoso.com", "bob@contoso.com", "finance@contoso.com", "audit@contoso.com",
          "oncall@contoso.com", "alerts@contoso.com")
MAIL_SEND, MAIL_READWRITE = "b633e1c5-b582-4048-a93e-9f11b44c7e96", "e2a3a72e-5f79-4c64-b1b1-878b674786c9"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


# -- the pages -----------------------------------------------------------------------------------------

BLOCK = re.compile(r"^(```+|:::+)[ \t]*(\{(?P<directive>[\w-]+)\})?(?P<rest>[^\n]*)$", re.MULTILINE)
INCLUDED = re.compile(r"^```\{literalinclude\}\s+(?P<path>\S+)", re.MULTILINE)
ALLOWED_DIRECTIVES = {"literalinclude", "graphmail-fields", "graphmail-clouds", "toctree", "include", "note",
                      "warning", "tip", "important", "seealso", "eval-rst"}
# A Markdown file a page includes (part of, between two of its headings), and an eval-rst block (autodoc only).
INCLUDE = re.compile(r"^```\{include\}\s+(?P<path>\S+)\n(?P<options>(?::[\w-]+:[^\n]*\n)*)```", re.MULTILINE)
EVAL_RST = re.compile(r"^```\{eval-rst\}\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
FENCED = re.compile(r"^```(?P<language>[\w+-]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


# Included, but run by nothing here: there is no Exchange Online to run it against. Its cmdlets and parameters
# are Microsoft's own (the page cites them); keep it to those.
NOT_RUN = {"example_dags/docs/tenant/rbac.ps1"}
# The example DAGs a page includes that another module runs (every other file is run here).
RUNNERS = {
    "example_dags/failure_alerts.py": "tests/test_alerts.py",
    "example_dags/report_distribution.py": "tests/test_dags.py",
    "example_dags/draft_review_send.py": "tests/test_dags.py",
    "example_dags/reviewed_report.py": "tests/test_review_gate.py",
    "example_dags/statements_bounce_report.py": "tests/test_bounce_report.py",
    "example_dags/hitl_approval.py": "tests/test_hitl.py",
    "example_dags/inbound_vendor_files.py": "tests/test_inbound_airflow.py",
    "example_dags/docs/merge_at_scale.py": "tests/test_sending_limits.py",
    **{f"example_dags/readme/{dag.name}": "tests/test_readme.py"
       for dag in (ROOT / "example_dags" / "readme").glob("*.py")},
}


def pages() -> list[Path]:
    """Every page of the site (architecture and benchmarks are the lead's, with their own rules)."""
    return sorted(page for page in DOCS.rglob("*.md")
                  if "_build" not in page.parts and page.name not in ("architecture.md", "benchmarks.md"))


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_a_page_shows_no_code_of_its_own(page):
    """Every fenced block is a directive: a file included, a generated table, a note, the API reference
    generated from docstrings; never pasted code."""
    text = page.read_text()
    for match in BLOCK.finditer(text):
        if match["directive"] is None and not match["rest"].strip():
            continue  # a closing fence
        assert match["directive"] in ALLOWED_DIRECTIVES, f"{page.name}: a block of pasted code: {match.group(0)!r}"
    for block in EVAL_RST.finditer(text):  # autodoc directives and their options only
        for line in block["body"].splitlines():
            assert (not line.strip() or re.match(r"\.\. auto\w+:: \S+$", line)
                    or (line[0].isspace() and "::" not in line and ">>>" not in line)), \
                f"{page.name}: an eval-rst block holds more than autodoc: {line!r}"


def runner_of(path: str) -> tuple[Path, str] | None:
    """(the test module that runs an included file, what it names it by), or None when nothing runs it. A DAG
    file is named by its DAG id (its stem, quoted), a template by the DAG that renders it, any other file by
    its name."""
    if Path(path).parent.name == "templates":  # rendered by the DAG beside its templates/ folder that names it
        dags = [dag for dag in (ROOT / path).parent.parent.glob("*.py") if Path(path).name in dag.read_text()]
        runs = [runner_of(dag.relative_to(ROOT).as_posix()) for dag in dags]
        return next((run for run in runs if run is not None), None)
    runner = ROOT / RUNNERS.get(path, "tests/test_docs_examples.py")
    name = f'"{Path(path).stem}"' if path.endswith(".py") else Path(path).name
    return (runner, name) if name in runner.read_text() else None


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_every_included_file_is_run_by_a_test(page):
    """Each file a page includes is named in a test that runs it (this module, or the one that runs it)."""
    for match in INCLUDED.finditer(page.read_text()):
        path = (page.parent / match["path"]).resolve().relative_to(ROOT).as_posix()
        assert (ROOT / path).is_file(), f"{page.name} includes {path}, which does not exist"
        if path in NOT_RUN:
            continue
        assert runner_of(path) is not None, f"{page.name} includes {path}, which no test runs"


def included_markdown(page: Path) -> list[tuple[Path, str]]:
    """(file, the part of it the page shows) for each Markdown file the page includes."""
    parts = []
    for match in INCLUDE.finditer(page.read_text()):
        path = (page.parent / match["path"]).resolve()
        options = dict(re.findall(r'^:([\w-]+):\s*"?(.*?)"?\s*$', match["options"], re.MULTILINE))
        text = path.read_text()
        if "start-after" in options:
            assert options["start-after"] in text, f"{page.name}: {path.name} has no {options['start-after']!r}"
            text = text.split(options["start-after"], 1)[1]
        if "end-before" in options:
            assert options["end-before"] in text, f"{page.name}: {path.name} has no {options['end-before']!r}"
            text = text.split(options["end-before"], 1)[0]
        parts.append((path, text))
    return parts


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_included_markdown_shows_only_code_that_runs(page):
    """A Markdown file included into a page (the emulator's README, CHANGELOG, SECURITY) shows its code blocks
    on the site: each must be one the emulator tests below run, or one NOT_RUN_BLOCKS explains."""
    for path, text in included_markdown(page):
        for block in FENCED.finditer(text):
            where = f"{page.name} shows a block of {path.relative_to(ROOT)}"
            assert path == EMULATOR_README, f"{where}, which no test runs:\n{block['code']}"
            assert claimed(block["language"], block["code"]), f"{where} that no test runs:\n{block['code']}"


def test_the_api_reference_documents_every_public_name():
    """Every name of the package root (the public API) is on the API page, generated from its docstring."""
    import airflow_graph_mail

    text = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^\.\. auto(?:class|function|exception):: airflow_graph_mail\.(\w+)$", text,
                                re.MULTILINE))
    for module in re.findall(r"^\.\. automodule:: (\S+)$", text, re.MULTILINE):
        documented |= set(import_module(module).__all__)
    missing = set(airflow_graph_mail.__all__) - {"__version__"} - documented
    assert not missing, f"docs/api.md does not document {sorted(missing)}"


def test_the_field_tables_cover_the_connection_form():
    """docs/_ext/graphmail_fields.py places every field of the form in a group, and no other."""
    pytest.importorskip("sphinx", reason="the docs extra (make test installs it; make test-airflow2 does not)")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from graphmail_fields import problems
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    assert problems() == []


# -- the connection examples ---------------------------------------------------------------------------


def example(name: str) -> dict:
    return json.loads((CONNECTIONS / name).read_text())


def on_emulator(connection: dict, emulator, **values) -> dict:
    """An example connection pointed at the emulator (where Graph and Entra are, its CA), with what the tenant
    gave (ids, a secret, file paths) in place of the example's values: only fields the example has."""
    from airflow_graph_mail.get_provider_info import EXTRAS

    assert set(connection["extra"]) <= set(EXTRAS), "an example uses an extra the connection form lacks"
    connection = json.loads(json.dumps(connection))
    for key, value in values.items():
        where = connection if key in ("login", "password") else connection["extra"]
        assert key in where, f"the example has no {key!r}"
        where[key] = value
    connection["extra"].update(graph_url=emulator.base_url, authority_url=emulator.base_url,
                               ca_bundle=str(emulator.ca_path))
    return connection


def signs_in(connection: dict, monkeypatch, conn_id: str = "graph_mail_docs") -> str:
    """The connection test's report; fails unless the connection signs in with Mail.Send granted."""
    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
    ok, report = GraphMailHook(graph_mail_conn_id=conn_id).test_connection()
    assert ok and "Mail.Send" in report, report
    return report


def test_the_client_secret_example(graph_emulator, monkeypatch):
    secret = graph_emulator.connection()["password"]
    connection = on_emulator(example("secret.json"), graph_emulator, login=graph_emulator.entra.default_app.client_id,
                             password=secret, tenant_id=graph_emulator.entra.tenant_id)
    assert "Signed in with client secret" in signs_in(connection, monkeypatch)


def test_the_managed_identity_example(graph_emulator, monkeypatch):
    """A user-assigned identity by its client id, found the way msal finds it on an Azure host."""
    for name, value in graph_emulator.entra.managed_identity_env().items():
        monkeypatch.setenv(name, value)
    identity = graph_emulator.entra.directory.add_managed_identity(example("managed_identity.json")["login"])
    report = signs_in(on_emulator(example("managed_identity.json"), graph_emulator), monkeypatch)
    assert f"managed identity (user-assigned), client id {identity.client_id}" in report


def test_the_refresh_token_example(graph_emulator, monkeypatch, tmp_path):
    graph_emulator.backend.store.add_user("reports@contoso.com")
    app = graph_emulator.entra.add_app(public_client=True)
    token = graph_emulator.entra.issue_refresh_token("reports@contoso.com", app)
    cache = tmp_path / "secrets" / "graph-mail-token-cache.json"
    connection = on_emulator(example("refresh_token.json"), graph_emulator, login=app.client_id,
                             tenant_id=graph_emulator.entra.tenant_id, refresh_token=token, token_cache_path=str(cache))
    assert "delegated scopes granted: Mail.ReadWrite, Mail.Send" in signs_in(connection, monkeypatch)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600  # the rotated token, owner-only


# -- the tenant scripts ----------------------------------------------------------------------------------

# A stand-in for the Azure CLI: every call is recorded; each command the scripts use must have the arguments
# Microsoft's reference requires, and answers what --query asks for, as `--output tsv` prints it.
FAKE_AZ = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
REQUIRED = {
    ("ad", "app", "create"): ["--display-name"], ("ad", "sp", "create"): ["--id"], ("ad", "sp", "show"): ["--id"],
    ("ad", "app", "permission", "add"): ["--id", "--api", "--api-permissions"],
    ("ad", "app", "permission", "admin-consent"): ["--id"], ("account", "show"): [],
    ("ad", "app", "credential", "reset"): ["--id"], ("aks", "show"): ["--resource-group", "--name"],
    ("ad", "app", "federated-credential", "create"): ["--id", "--parameters"],
    ("rest",): ["--method", "--uri"],
}
command = next((c for c in REQUIRED if tuple(args[:len(c)]) == c), None)
if command is None:
    sys.exit("az: not a command the scripts may use: " + " ".join(args))
missing = [a for a in REQUIRED[command] if a not in args or not args[args.index(a) + 1].strip()]
if missing:
    sys.exit("az " + " ".join(command) + ": missing " + ", ".join(missing))
query = args[args.index("--query") + 1] if "--query" in args else None
answers = {"appId": "FAKE_APP_ID", "tenantId": "FAKE_TENANT_ID", "password": "FAKE_SECRET",
           "oidcIssuerProfile.issuerUrl": "FAKE_ISSUER", "id": "FAKE_GRAPH_SP"}
if query:
    print(os.environ[answers[query]])
'''


@pytest.fixture
def az(tmp_path, graph_emulator):
    """run(script, **env) runs a tenant script in tmp_path/work with the stand-in az first on PATH; returns
    (stdout, the az calls made)."""
    bin_dir, work, log = tmp_path / "bin", tmp_path / "work", tmp_path / "az.log"
    bin_dir.mkdir()
    work.mkdir()
    fake = bin_dir / "az"
    fake.write_text(FAKE_AZ.replace("{python}", sys.executable))
    fake.chmod(0o755)

    def run(script: str, **env: str) -> tuple[str, list[list[str]]]:
        log.write_text("")
        environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "AZ_LOG": str(log),
                       "FAKE_TENANT_ID": graph_emulator.entra.tenant_id, "FAKE_SECRET": "not-used",
                       "FAKE_ISSUER": graph_emulator.entra.federation_issuer, "FAKE_GRAPH_SP": "graph-sp-object-id",
                       **env}
        result = subprocess.run(["bash", str(TENANT / script)], cwd=work, env=environment, capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout, [json.loads(line) for line in log.read_text().splitlines()]

    run.work = work  # type: ignore[attr-defined]
    return run


def arg(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def words(call: list[str]) -> str:
    """The command a call ran, without its arguments: "ad app create"."""
    return " ".join(word for word in call[: next(i for i, a in enumerate([*call, "--"]) if a.startswith("--"))])


def test_register_app_and_client_secret_scripts(az, graph_emulator, monkeypatch):
    """The app is registered with Graph's Mail.Send and Mail.ReadWrite application permissions, consented; the
    secret is appended (az's reset would otherwise delete the app's other credentials), and signs in."""
    app = graph_emulator.entra.add_app(secret="from-az-credential-reset")
    out, calls = az("register_app.sh", FAKE_APP_ID=app.client_id)
    assert [words(c) for c in calls] == ["ad app create", "ad sp create", "ad app permission add",
                                         "ad app permission admin-consent", "account show"]
    assert arg(calls[2], "--api") == GRAPH_APP_ID
    roles = calls[2][calls[2].index("--api-permissions") + 1:]
    assert roles == [f"{MAIL_SEND}=Role", f"{MAIL_READWRITE}=Role"]
    assert all(arg(c, "--id") == app.client_id for c in calls[1:4])
    assert f"login (client id): {app.client_id}" in out
    assert f"extra.tenant_id:   {graph_emulator.entra.tenant_id}" in out

    out, (reset,) = az("client_secret.sh", APP_ID=app.client_id, FAKE_SECRET="from-az-credential-reset")
    assert "--append" in reset and "--cert" not in reset
    secret = out.split("password (client secret): ")[1].strip()
    connection = on_emulator(example("secret.json"), graph_emulator, login=app.client_id, password=secret,
                             tenant_id=graph_emulator.entra.tenant_id)
    signs_in(connection, monkeypatch)


def test_certificate_script_makes_a_pem_that_signs_in(az, graph_emulator, monkeypatch):
    """openssl runs for real: the certificate it uploads (the stand-in hands it to the emulated tenant, as
    Entra stores it) and the PEM it leaves sign in through the certificate example; the thumbprint it prints
    is the one the connection checks."""
    app = graph_emulator.entra.add_app()
    out, (reset,) = az("certificate.sh", APP_ID=app.client_id)
    assert arg(reset, "--id") == app.client_id and "--append" in reset
    uploaded = az.work / arg(reset, "--cert").removeprefix("@")
    assert b"PRIVATE KEY" not in uploaded.read_bytes()  # only the certificate leaves
    app.certificates.append(uploaded.read_bytes())
    pem = az.work / "graph-app.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600 and not (az.work / "graph-app.key").exists()
    thumbprint = out.strip().splitlines()[-1]
    connection = on_emulator(example("certificate.json"), graph_emulator, login=app.client_id,
                             tenant_id=graph_emulator.entra.tenant_id, certificate_path=str(pem))
    del connection["extra"]["certificate_passphrase"]  # -nodes: this key is not encrypted
    connection["extra"]["certificate_thumbprint"] = thumbprint  # checked against the certificate
    assert f"thumbprint {thumbprint}" in signs_in(connection, monkeypatch)


def test_federated_credential_script_trusts_the_pods_token(az, graph_emulator, monkeypatch, tmp_path):
    """The federated credential the script uploads, stored as Entra stores it, accepts the token the workload
    identity webhook projects for the service account; the example connection reads the rest from the
    webhook's environment."""
    app = graph_emulator.entra.add_app()
    _, (aks, create) = az("federated_credential.sh", APP_ID=app.client_id, RESOURCE_GROUP="rg", CLUSTER="aks")
    assert words(aks) == "aks show" and arg(create, "--id") == app.client_id
    credential = json.loads((az.work / arg(create, "--parameters")).read_text())
    app.federated.append({k: credential[k] for k in ("issuer", "subject", "audiences")})
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(graph_emulator.entra.issue_federated_token("system:serviceaccount:airflow:airflow-worker"))
    for name, value in {"AZURE_CLIENT_ID": app.client_id, "AZURE_TENANT_ID": graph_emulator.entra.tenant_id,
                        "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}.items():
        monkeypatch.setenv(name, value)
    report = signs_in(on_emulator(example("workload_identity.json"), graph_emulator), monkeypatch)
    assert "Signed in with workload identity" in report


def test_managed_identity_script_assigns_both_roles(az, graph_emulator):
    """Each call assigns one of Graph's roles to the identity, in the body Graph's appRoleAssignments takes."""
    _, calls = az("managed_identity.sh", IDENTITY_PRINCIPAL_ID="mi-object-id")
    (show, *assignments) = calls
    assert words(show) == "ad sp show" and arg(show, "--id") == GRAPH_APP_ID
    bodies = [json.loads(arg(c, "--body")) for c in assignments]
    assert [b["appRoleId"] for b in bodies] == [MAIL_SEND, MAIL_READWRITE]
    assert all(b["principalId"] == "mi-object-id" and b["resourceId"] == "graph-sp-object-id" for b in bodies)
    assert all(arg(c, "--method") == "POST" and arg(c, "--uri") ==
               "https://graph.microsoft.com/v1.0/servicePrincipals/mi-object-id/appRoleAssignments"
               for c in assignments)


# -- migrating from the smtp provider ------------------------------------------------------------------


@pytest.fixture
def smtp_server():
    """A local SMTP server (aiosmtpd) standing in for Exchange's SMTP AUTH endpoint; yields (port, mails),
    each mail (envelope recipients, parsed message)."""
    from aiosmtpd.controller import Controller

    mails: list[tuple[list[str], email.message.EmailMessage]] = []

    class Collect:
        async def handle_DATA(self, server, session, envelope):
            mails.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content, policy=policy.default)))
            return "250 OK"

    with socket.socket() as probe:  # aiosmtpd checks its port by connecting to it: give it a real one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, mails
    finally:
        controller.stop()


def smtp_connection(port: int) -> str:
    return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": port,
                       "extra": {"disable_tls": True, "disable_ssl": True}})


def by_smtp(mails, subject: str) -> dict:
    """What one SMTP delivery carried, in terms both ways share."""
    (rcpt, message), = [(r, m) for r, m in mails if m["subject"] == subject]
    to = [a.strip() for a in str(message["to"]).split(",")]
    cc = [a.strip() for a in str(message["cc"] or "").split(",") if a.strip()]
    return {"to": to, "cc": cc, "bcc": sorted(set(rcpt) - set(to) - set(cc)),
            "body": message.get_body(("html",)).get_content().strip(),
            "attachments": {part.get_filename(): part.get_content() for part in message.iter_attachments()},
            "x-report-id": message["x-report-id"]}


def by_graph(emulator, sender: str, subject: str) -> dict:
    """What one Graph send carried: the sender's Sent Items copy (it keeps Bcc), its attachments' bytes."""
    (sent,) = [m for m in emulator.inspect.messages(sender, "sentitems") if m["subject"] == subject]
    names = {name: [r["emailAddress"]["address"] for r in sent.get(f"{name}Recipients") or []]
             for name in ("to", "cc", "bcc")}
    headers = {h["name"].lower(): h["value"] for h in sent.get("internetMessageHeaders") or []}
    return {**names, "bcc": sorted(names["bcc"]), "body": sent["body"]["content"].strip(),
            "attachments": emulator.inspect.attachment_bytes(sent["id"]), "x-report-id": headers.get("x-report-id")}


def test_the_report_arrives_the_same_both_ways(run_dag, graph_emulator, smtp_server):
    """report_by_smtp (EmailOperator, SmtpNotifier) against an SMTP server, report_by_graph
    (GraphSendMailOperator, GraphMailNotifier) against the emulator: the same recipients, subject, body,
    attachment and header arrive, and the notifier's mail too."""
    port, mails = smtp_server
    for person in PEOPLE:
        graph_emulator.backend.store.add_user(person)
    before = run_dag("report_by_smtp", dags_folder=EXAMPLES, AIRFLOW_CONN_SMTP_DEFAULT=smtp_connection(port))
    assert before.returncode == 0, (before.stdout + before.stderr)[-3000:]
    after = run_dag("report_by_graph", dags_folder=EXAMPLES)
    assert after.returncode == 0, (after.stdout + after.stderr)[-3000:]

    subject = f"Sales report for {DAY}"
    smtp, graph = by_smtp(mails, subject), by_graph(graph_emulator, "reports@contoso.com", subject)
    assert smtp == graph
    assert graph["to"] == ["ann@contoso.com", "bob@contoso.com"] and graph["bcc"] == ["audit@contoso.com"]
    assert graph["body"] == f"<p>Hello,</p>\n<p>the sales report for <b>{DAY}</b> is attached.</p>"
    assert graph["attachments"] == {f"sales_{DAY}.csv": b"region,revenue\nNorth,15360.50\nSouth,11020.00\n"}
    assert [m["subject"] for m in graph_emulator.inspect.messages("audit@contoso.com")] == [subject]  # Bcc delivered

    notified = f"Sent: sales report for {DAY}"
    smtp_note, graph_note = by_smtp(mails, notified), by_graph(graph_emulator, "reports@contoso.com", notified)
    assert smtp_note["to"] == graph_note["to"] == ["oncall@contoso.com"]
    assert smtp_note["body"] == graph_note["body"] == "<p>mail_report mailed the report.</p>"


SEND = """
import sys
from airflow.utils.email import send_email

send_email(["ann@contoso.com", "bob@contoso.com"], "Loader finished", "<p>All <b>3</b> tables loaded.</p>",
           files=[sys.argv[1]], cc="finance@contoso.com", bcc="audit@contoso.com",
           custom_headers={"X-Report-Id": "loader"})
"""


def settings(name: str) -> dict[str, str]:
    """A docs .cfg file as the AIRFLOW__SECTION__KEY variables that say the same."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(EXAMPLES / name)
    return {f"AIRFLOW__{s.upper()}__{k.upper()}": v for s in parser.sections() for k, v in parser[s].items()}


def test_airflow_send_email_the_same_both_ways(graph_emulator, smtp_server, tmp_path):
    """Airflow's own send_email (what email_on_failure and every [email] user call) under the page's [email]
    settings: email_smtp.cfg against the local SMTP server (in place of smtp.office365.com:587 and its
    STARTTLS), email_graph.cfg against the emulator. The same mail arrives."""
    from airflow_env import airflow_env

    port, mails = smtp_server
    for person in PEOPLE:
        graph_emulator.backend.store.add_user(person)
    attachment = tmp_path / "loaded.csv"
    attachment.write_bytes(b"table,rows\nsales,3\n")
    smtp = settings("email_smtp.cfg")
    assert smtp["AIRFLOW__SMTP__SMTP_HOST"] == "smtp.office365.com"
    smtp.update(AIRFLOW__SMTP__SMTP_HOST="127.0.0.1", AIRFLOW__SMTP__SMTP_PORT=str(port),
                AIRFLOW__SMTP__SMTP_STARTTLS="False", AIRFLOW_CONN_SMTP_DEFAULT=smtp_connection(port))
    graph = settings("email_graph.cfg")
    assert graph["AIRFLOW__EMAIL__EMAIL_CONN_ID"] == "graph_mail_default"
    for variables in (smtp, graph):
        env = {**airflow_env(tmp_path / "airflow", graph_emulator.connection()), **variables}
        result = subprocess.run([sys.executable, "-c", SEND, str(attachment)], env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
    assert by_smtp(mails, "Loader finished") == by_graph(graph_emulator, "alerts@contoso.com", "Loader finished")
    assert mails[0][1]["from"] == "alerts@contoso.com"  # [smtp] smtp_mail_from; Graph: [email] from_email


# -- installation ------------------------------------------------------------------------------------------

# Stand-ins for pip and uv: every call is recorded; uv "builds" the wheel the script names (make test-package
# builds the real one), pip checks that the wheel it is given exists.
FAKE_TOOL = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["TOOL_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *args]) + "\n")
if os.path.basename(sys.argv[0]) == "uv":
    os.makedirs("dist", exist_ok=True)
    open(os.path.join("dist", os.environ["WHEEL"]), "wb").close()
else:
    missing = [a for a in args if a.endswith(".whl") and not os.path.exists(a)]
    if missing:
        sys.exit("pip: no such wheel: " + " ".join(missing))
'''


def test_the_install_script(tmp_path):
    """install.sh builds the wheel and installs it with Airflow's constraints: the wheel named as this
    release's, the constraints URL in Airflow's pattern for the Airflow and the Python given, and, on the
    newest Airflow the suite runs on (make test), that Airflow's version."""
    bin_dir, log = tmp_path / "bin", tmp_path / "tools.log"
    bin_dir.mkdir()
    for tool in ("pip", "uv"):
        (bin_dir / tool).write_text(FAKE_TOOL.replace("{python}", sys.executable))
        (bin_dir / tool).chmod(0o755)
    wheel = f"airflow_graph_mail-{version('airflow-graph-mail')}-py3-none-any.whl"
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]]),
           "TOOL_LOG": str(log), "WHEEL": wheel}
    result = subprocess.run(["bash", str(EXAMPLES / "install.sh")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[:2] == [["pip", "install", "uv"], ["uv", "build", "--wheel"]]
    (pip, command, airflow, built, option, constraints), = calls[2:]
    assert (pip, command, built, option) == ("pip", "install", f"dist/{wheel}", "--constraint")
    airflow_version = airflow.removeprefix("apache-airflow==")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert constraints == (f"https://raw.githubusercontent.com/apache/airflow/constraints-{airflow_version}/"
                           f"constraints-{python}.txt")
    if not version("apache-airflow").startswith("2."):  # make test's Airflow: the newest the suite runs on
        assert airflow_version == version("apache-airflow"), "install.sh names another Airflow than the newest"


# -- getting started, and the emulator's own pages ---------------------------------------------------------

GETTING_STARTED = EXAMPLES / "getting_started"
EMULATOR_README = ROOT / "emulator" / "README.md"
VENV_BIN = str(Path(sys.executable).parent)  # graph-mail-emulator and airflow, as a user's PATH has them
# Blocks of the emulator's README that its pages show and no test runs, and why.
NOT_RUN_BLOCKS = {
    "/etc/hosts": "needs root and rewrites the machine's host names; the graph_microsoft_hosts fixture does the "
                  "same inside one process, and emulator/tests/test_other_clients.py runs each client through it",
}
# Commands of the emulator's README that another test runs, and which.
RUN_ELSEWHERE = {"pip install ./emulator": "scripts/check_package.py"}  # builds emulator/, installs the wheel


def commands(code: str) -> list[str]:
    """A shell block's commands, comments dropped."""
    lines = code.replace("\\\n", " ").splitlines()  # continued lines as one
    return [" ".join(shlex.split(line, comments=True)) for line in lines if shlex.split(line, comments=True)]


def readme_blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the emulator's README."""
    return [(m["language"], m["code"]) for m in FENCED.finditer(EMULATOR_README.read_text())]


def is_python_api(language: str, code: str) -> bool:
    return language == "python"


def is_session(language: str, code: str) -> bool:
    return "curl" in code and "/_emulator/reset" in code


def is_command_line(language: str, code: str) -> bool:
    return language == "bash" and all(c.startswith("graph-mail-emulator ") or c in RUN_ELSEWHERE
                                      for c in commands(code))


def claimed(language: str, code: str) -> bool:
    """A block of the emulator's README is run by one of the tests below, or NOT_RUN_BLOCKS says why not."""
    return (any(test(language, code) for test in (is_python_api, is_session, is_command_line))
            or any(marker in code for marker in NOT_RUN_BLOCKS))


def test_what_the_readme_leaves_to_others_is_run_there():
    for command, runner in RUN_ELSEWHERE.items():
        assert "emulator" in (ROOT / runner).read_text(), f"{runner} no longer runs {command!r}"


class Emulator:
    """graph-mail-emulator started as a user starts it, in ``cwd``; ``--port 0`` added unless the command has a
    port (8443, its default, may be taken on this machine)."""

    def __init__(self, command: str, cwd: Path):
        argv = shlex.split(command, comments=True)
        argv += [] if "--port" in argv else ["--port", "0"]
        self.process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"})
        self.output = []
        assert self.process.stdout is not None
        for line in self.process.stdout:  # it prints its address once it listens, the viewer's last
            self.output.append(line)
            if line.startswith("Graph mail emulator on "):
                self.base_url = line.split(" on ", 1)[1].strip()
            if line.startswith("Mailbox viewer: "):
                break
        assert hasattr(self, "base_url"), "".join(self.output)
        threading.Thread(target=self.output.extend, args=(self.process.stdout,), daemon=True).start()  # drain
        self.state = cwd / argv[argv.index("--state-dir") + 1]

    def get(self, path: str):
        context = ssl.create_default_context(cafile=str(self.state / "tls" / "ca.pem"))
        with urllib.request.urlopen(self.base_url + path, context=context, timeout=30) as answer:
            return json.load(answer)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.mark.integration  # starts the emulator's command and runs Airflow's
def test_getting_started_delivers_the_first_mail(tmp_path, airflow_template_home):
    """The page's two terminals: start_emulator.sh's command, then first_mail.sh in a fresh Airflow home whose
    DAGs folder holds the page's DAG; the connection added from the emulator's file, the mail in Bob's Inbox."""
    from airflow_env import airflow_env, migrate

    work = tmp_path / "work"
    work.mkdir()
    (command,) = commands((GETTING_STARTED / "start_emulator.sh").read_text())
    emulator = Emulator(command, work)
    try:
        home = tmp_path / "airflow"
        migrate(home, template=airflow_template_home)
        env = airflow_env(home, None, ROOT / "example_dags" / "readme",
                          PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", TMPDIR=str(tmp_path))
        result = subprocess.run(["bash", str(GETTING_STARTED / "first_mail.sh")], cwd=work, env=env,
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert "Sent 'Daily sales report for " in result.stdout + result.stderr
        inbox = emulator.get("/_emulator/mailboxes/bob@example.com/inbox")["value"]
        assert [m["subject"][: len("Daily sales report for ")] for m in inbox] == ["Daily sales report for "]
    finally:
        emulator.stop()


@pytest.mark.integration  # starts the emulator's command
def test_the_emulator_readme_commands_start_it(tmp_path):
    """Each graph-mail-emulator command the README shows starts it and writes the connection and CA."""
    shown = {c for language, code in readme_blocks() if is_command_line(language, code)
             for c in commands(code) if c not in RUN_ELSEWHERE}
    assert shown
    for number, command in enumerate(sorted(shown)):
        work = tmp_path / str(number)
        work.mkdir()
        emulator = Emulator(command, work)
        try:
            connection = json.loads((emulator.state / "airflow-connection.json").read_text())
            assert connection["conn_type"] == "graphmail" and connection["extra"]["graph_url"] == emulator.base_url
            assert emulator.get("/_emulator/mailboxes")["value"] is not None
        finally:
            emulator.stop()


@pytest.mark.integration  # the block starts an emulator in-process, in a child Python
def test_the_emulator_readme_python_api(tmp_path):
    """The README's Python block runs as written, on a free port in place of 8443."""
    (code,) = [code for language, code in readme_blocks() if is_python_api(language, code)]
    assert "port=8443" in code
    result = subprocess.run([sys.executable, "-c", code.replace("port=8443", "port=0")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / ".emulator" / "tls" / "ca.pem").is_file()


@pytest.mark.integration  # starts the emulator's command
@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="the README's session needs curl and jq")
def test_the_emulator_readme_session_from_another_language(tmp_path):
    """The README's curl session against the emulator its command line starts: sign in, send, read the
    Inbox through the inspection API, reset."""
    (code,) = [code for language, code in readme_blocks() if is_session(language, code)]
    emulator = Emulator("graph-mail-emulator --state-dir .emulator", tmp_path)
    try:
        assert "BASE=https://127.0.0.1:8443;" in code
        result = subprocess.run(["bash", "-euo", "pipefail", "-c",
                                 code.replace("BASE=https://127.0.0.1:8443;", f"BASE={emulator.base_url};")],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ['"Hi"']
        mailboxes = emulator.get("/_emulator/mailboxes")["value"]  # reset: nothing in any Inbox
        assert not [m for m in mailboxes if m["folders"].get("inbox")]
    finally:
        emulator.stop()
