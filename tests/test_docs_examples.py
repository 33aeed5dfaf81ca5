"""The documentation site shows no code of its own: every block on a docs/ page is a file included whole or in
part, and this module runs those files: the connection examples sign in to the emulator, the tenant scripts
run (openssl for real, az as a stand-in that checks each call), and the migration's before/after DAGs and
[email] settings deliver the same mail through SMTP and through Graph."""

from __future__ import annotations

import configparser
import email
import json
import os
import re
import socket
import stat
import subprocess
import sys
from email import policy
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
                      "warning", "tip", "important", "seealso"}


# Included, but run by nothing here: there is no Exchange Online to run it against. Its cmdlets and parameters
# are Microsoft's own (the page cites them); keep it to those.
NOT_RUN = {"example_dags/docs/tenant/rbac.ps1"}


def pages() -> list[Path]:
    """The pages this module answers for (architecture and benchmarks are the lead's, with their own rules)."""
    return [DOCS / f"{name}.md" for name in ("connection", "tenant", "failure-alerts", "migrating", "security")]


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_a_page_shows_no_code_of_its_own(page):
    """Every fenced block is a directive: a file included, a generated table, a note; never pasted code."""
    text = page.read_text()
    for match in BLOCK.finditer(text):
        if match["directive"] is None and not match["rest"].strip():
            continue  # a closing fence
        assert match["directive"] in ALLOWED_DIRECTIVES, f"{page.name}: a block of pasted code: {match.group(0)!r}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_included_file_is_run_by_a_test(page):
    """Each file a page includes is named in a test that runs it (this module, or the one that runs it)."""
    runners = {"example_dags/failure_alerts.py": ROOT / "tests" / "test_alerts.py"}
    for match in INCLUDED.finditer(page.read_text()):
        path = (page.parent / match["path"]).resolve().relative_to(ROOT).as_posix()
        assert (ROOT / path).is_file(), f"{page.name} includes {path}, which does not exist"
        if path in NOT_RUN:
            continue
        runner = runners.get(path, Path(__file__))
        # A DAG file is run by its DAG id (its stem, quoted); any other file by its name.
        name = f'"{Path(path).stem}"' if path.endswith(".py") else Path(path).name
        assert name in runner.read_text(), f"{page.name} includes {path}, which no test runs"


def test_the_field_tables_cover_the_connection_form():
    """docs/_ext/graphmail_fields.py places every field of the form in a group, and no other."""
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
        env = airflow_env(tmp_path / "airflow", graph_emulator.connection(), **variables)
        result = subprocess.run([sys.executable, "-c", SEND, str(attachment)], env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
    assert by_smtp(mails, "Loader finished") == by_graph(graph_emulator, "alerts@contoso.com", "Loader finished")
    assert mails[0][1]["from"] == "alerts@contoso.com"  # [smtp] smtp_mail_from; Graph: [email] from_email
