"""Bad inputs, one row each: the error names the field and the fix, and nothing reached a mailbox.

Every row asserts the error's text and that the emulator saw no request with a side effect (any
non-GET Graph call; token requests do not count). Three things only Graph can tell: a draft id that
does not exist, a mailbox without Exchange Online, and a missing Mail.Send (Exchange RBAC for
Applications grants it without a claim in the token). For those the one POST was refused (404, 403)
and changed nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
from test_hook import make_certificate

from airflow_graph_mail.graph.errors import (
    GraphAuthError, GraphConfigError, ItemNotFoundError, MailboxNotEnabledError,
    AccessDeniedError, MessageTooLargeError,
)
from airflow_graph_mail.mail.errors import MessageValidationError
from airflow_graph_mail.mail.message import Message

MB = 1024 * 1024


@dataclass
class Ctx:
    connect: Callable
    emulator: object
    tmp: Path

    def hook(self, **changes):
        return self.connect("graph_mail_table", **changes)

    def send(self, message=None, **changes):
        return self.hook(**changes).send_mail(message or Message(to="ann@example.com", subject="x"))


def message(**fields):
    return lambda ctx: Message(**{"to": "ann@example.com", **fields})


def send(**fields):
    return lambda ctx: ctx.send(Message(**{"to": "ann@example.com", **fields}))


def connection(**changes):
    return lambda ctx: ctx.send(**changes)


def extra(**values):
    return connection(extra=values)


def sparse(ctx, name: str, size: int) -> str:
    path = ctx.tmp / name
    with path.open("wb") as handle:
        handle.truncate(size)
    return str(path)


@contextlib.contextmanager
def as_nobody():
    """Drop to an unprivileged effective uid (root reads any file whatever its mode)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def unreadable(ctx):
    folder = Path(tempfile.mkdtemp(prefix="graph-mail-locked-"))
    folder.chmod(0o755)
    locked = folder / "salaries.csv"
    locked.write_text("name,salary\n")
    locked.chmod(0)
    with as_nobody():
        Message(to="ann@example.com", attachments=[str(locked)])


def rendered(ctx, body: str, files: dict | None = None):
    """The operator's templates rendered by Airflow, as a task run renders them."""
    from airflow.providers.common.compat.sdk import DAG

    from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator

    for name, text in (files or {}).items():
        (ctx.tmp / name).write_text(text)
    with DAG("bad_templates", schedule=None, template_searchpath=[str(ctx.tmp)]):
        operator = GraphSendMailOperator(task_id="send", to="ann@example.com", subject="Report {{ ds }}",
                                         body=body)
    operator.render_template_fields({"ds": "2026-11-20", "params": {}})


def expired_secret(ctx):
    app = ctx.emulator.add_app(secret="old-secret", secret_expires_at=1.0)
    ctx.send(login=app.client_id, password="old-secret")


def without_mail_send(ctx):
    app = ctx.emulator.add_app(secret="read-only", roles=["Mail.ReadWrite"])
    ctx.send(login=app.client_id, password="read-only")


def onprem_mailbox(ctx):
    ctx.emulator.add_user("onprem@contoso.com", rest_enabled=False)
    ctx.hook().send_mail(Message(to="ann@example.com"), sender="onprem@contoso.com")


def certificate_and_secret(ctx):
    bundle, _ = make_certificate()
    ctx.send(extra={"certificate_private_key": bundle.decode()})


def outside_allow_list(ctx):
    ctx.hook(extra={"allowed_recipient_domains": "contoso.com, *.fabrikam.com"}).send_mail(
        Message(to="ann@contoso.com", cc="bob@eu.fabrikam.com", bcc="eve@evil.example"))


def draft_edited_to_outsider(ctx):
    """A person added an outside address in Outlook; the allow-list is checked again at send time."""
    from graph_http import get_token

    draft = ctx.hook().create_draft(Message(to="ann@contoso.com", subject="review me"))
    http = ctx.hook().client.session
    token = get_token(http, ctx.emulator).json()["access_token"]
    edited = http.patch(f"{ctx.emulator.base_url}/v1.0/users/{ctx.emulator.default_sender}/messages/{draft['id']}",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"ccRecipients": [{"emailAddress": {"address": "x@gmail.com"}}]})
    assert edited.status_code == 200 and edited.json()["ccRecipients"][0]["emailAddress"]["address"] == "x@gmail.com"
    ctx.emulator.request_log.clear()
    ctx.hook(extra={"allowed_recipient_domains": "contoso.com"}).send_draft(draft["id"])


ROWS = [
    # -- recipients ---------------------------------------------------------------------------------------
    ("malformed address", message(to="ann@"), MessageValidationError, "to: 'ann@' is not a valid e-mail address"),
    ("address without a domain dot", message(cc="ann@localhost"), MessageValidationError,
     "cc: 'ann@localhost' is not a valid e-mail address"),
    ("address with a space", message(to="ann smith@example.com"), MessageValidationError,
     "'ann smith@example.com' is not a valid e-mail address"),
    ("empty address in a list", message(to=["ann@example.com", ""]), MessageValidationError,
     "to[1]: empty address: remove the entry or fill it in"),
    ("duplicate address in one field", message(to="ann@example.com; ANN@example.com"), MessageValidationError,
     "to: 'ANN@example.com' is listed twice; remove one"),
    ("duplicate address across to and bcc", message(bcc="ann@example.com"), MessageValidationError,
     "bcc: 'ann@example.com' is also in to; keep it in one"),
    ("display name with an unquoted comma", message(to="Smith, Ann <ann@example.com>"), MessageValidationError,
     "'Smith' is not a valid e-mail address (a display name with a comma must be quoted"),
    ("non-ASCII display name with an unquoted comma", message(to="Müller, Jürgen <jm@example.com>"),
     MessageValidationError, "'Müller' is not a valid e-mail address (a display name with a comma must be quoted"),
    ("display name with an unbalanced quote", message(to='"Smith <ann@example.com>'), MessageValidationError,
     "unbalanced quote in '\"Smith <ann@example.com>': close the display name's quotes"),
    ("display name with a line break", message(to="Ann\r\nBcc: eve@evil.example <ann@example.com>"),
     MessageValidationError, "to: line break in recipient"),
    ("IDN domain too long once encoded", message(to="ann@" + "ä" * 60 + ".example"), MessageValidationError,
     "is not a valid e-mail address"),
    ("not a string", message(to=["ann@example.com", 42]), MessageValidationError,
     "expected an e-mail address string, got int"),
    ("Graph recipient without an address", lambda ctx: ctx.send({"subject": "x", "toRecipients": [
        {"emailAddress": {"name": "Ann"}}]}), MessageValidationError, "has no emailAddress.address"),
    ("no recipients", send(to=None, subject="x"), MessageValidationError,
     "to: no recipients: give at least one address in to, cc or bcc"),
    ("over 500 recipients", message(to=[f"u{i}@example.com" for i in range(300)],
                                    cc=[f"c{i}@example.com" for i in range(201)]), MessageValidationError,
     "501 recipients; Graph accepts at most 500 per message: split the list"),
    # -- subject, headers, body -------------------------------------------------------------------------
    ("CR in the subject", message(subject="Report\rBcc: eve@evil.example"), MessageValidationError,
     "subject: must not contain a line break (CR or LF)"),
    ("LF in the subject", message(subject="Report\nfor Q3"), MessageValidationError,
     "subject: must not contain a line break (CR or LF)"),
    ("LF in a header value", message(headers={"x-report": "q3\nBcc: eve@evil.example"}), MessageValidationError,
     "headers[x-report]: must not contain a line break (CR or LF)"),
    ("header name without x-", message(headers={"Reply-To": "eve@evil.example"}), MessageValidationError,
     "headers: 'Reply-To': Graph accepts only custom headers whose name starts with 'x-'"),
    ("unknown body type", message(body_type="markdown"), MessageValidationError,
     "body_type: 'markdown' is not one of html, text"),
    ("unknown importance", message(importance="urgent"), MessageValidationError,
     "importance: 'urgent' is not one of low, normal, high"),
    ("cid: without its inline image", message(body='<img src="cid:chart">'), MessageValidationError,
     "cid:chart"),
    # -- templates (rendered by Airflow, as in a task) ------------------------------------------------
    ("template syntax error", lambda ctx: rendered(ctx, "<p>{{ ds </p>"), TemplateSyntaxError, "unexpected '/'"),
    ("undefined template variable", lambda ctx: rendered(ctx, "<p>Dear {{ customer_name }}</p>"), UndefinedError,
     "'customer_name' is undefined"),
    ("missing template file", lambda ctx: rendered(ctx, "statement_missing.html"), TemplateNotFound,
     "statement_missing.html"),
    ("undefined variable in a template file", lambda ctx: rendered(
        ctx, "statement.html", {"statement.html": "<p>{{ balance }}</p>"}), UndefinedError,
     "'balance' is undefined"),
    # -- attachments ---------------------------------------------------------------------------------
    ("missing attachment", message(attachments=["/nonexistent/report.csv"]), MessageValidationError,
     "attachments: file not found: /nonexistent/report.csv"),
    ("unreadable attachment", unreadable, MessageValidationError, "attachments: file is not readable:"),
    ("directory as attachment", lambda ctx: Message(to="a@example.com", attachments=[str(ctx.tmp)]),
     MessageValidationError, "attachments: not a regular file:"),
    ("glob matching nothing", lambda ctx: Message(to="a@example.com", attachments=[str(ctx.tmp / "*.xlsx")]),
     MessageValidationError, "matched no file"),
    ("attachment over 150 MB", lambda ctx: Message(to="a@example.com", attachments=[
        sparse(ctx, "huge.bin", 151 * MB)]), MessageValidationError,
     "huge.bin is 151.0 MB; Graph accepts at most 150 MB per attachment"),
    ("message over the size limit", lambda ctx: ctx.send(Message(to="a@example.com", attachments=[
        sparse(ctx, "big.bin", 36 * MB)])), MessageValidationError,
     "the message is 36.0 MB but the limit is 35 MB (connection setting max_message_size_mb"),
    ("attachment with no name", message(attachments=[("", b"x")]), MessageValidationError, "needs a file name"),
    ("attachment dict with two sources", message(attachments=[{"path": "/a", "content": "b", "name": "c"}]),
     MessageValidationError, "needs exactly one of path, uri, content or content_base64"),
    ("MIME over 4 MB", lambda ctx: ctx.hook().send_mime(Message(
        to="a@example.com", attachments=[("big.bin", b"x" * 3_100_000)]).to_mime()), MessageTooLargeError,
     "at most 4 MB"),
    # -- drafts ---------------------------------------------------------------------------------------
    ("empty draft id", lambda ctx: ctx.hook().send_draft(" "), GraphConfigError,
     "message_id: empty draft id; pass the id returned when the draft was created"),
    ("draft id that does not exist", lambda ctx: ctx.hook().send_draft("AAMkAGnothere"), ItemNotFoundError,
     "ErrorItemNotFound"),
    # -- connection -----------------------------------------------------------------------------------
    ("connection without tenant", extra(tenant_id=None), GraphConfigError,
     "extra 'tenant_id' is empty; set the directory (tenant) id"),
    ("connection without client id", connection(login=None), GraphConfigError,
     "login (the app's client id) is empty"),
    ("connection without secret", connection(password=None), GraphConfigError,
     "no credential; set the password (client secret), a certificate"),
    ("both a secret and a certificate", certificate_and_secret, GraphConfigError,
     "several credentials are set (password, certificate_private_key); keep one and remove the others"),
    ("unknown cloud", extra(cloud="mars"), GraphConfigError, "cloud: unknown cloud 'mars'; use one of global"),
    ("malformed Graph URL", extra(graph_url="graph.example.com"), GraphConfigError,
     "graph_url: 'graph.example.com' is not a URL; expected https://host"),
    ("plain http to a remote host", extra(authority_url="http://login.example.com"), GraphConfigError,
     "authority_url: plain http:// is allowed only for a loopback host; use https://"),
    ("unclear tls_verify", extra(tls_verify="no"), GraphConfigError,
     "extra 'tls_verify' is 'no'; leave it unset (verified), or give false"),
    ("missing CA bundle", extra(ca_bundle="/no/such/ca.pem"), GraphConfigError,
     "ca_bundle '/no/such/ca.pem' is not a file"),
    ("message size limit not a number", extra(max_message_size_mb="lots"), GraphConfigError,
     "'max_message_size_mb' is 'lots'; give a number of MB from 1 to 150"),
    ("expired client secret", expired_secret, GraphAuthError,
     "AADSTS7000222: The provided client secret keys for app"),
    ("wrong or revoked client secret", connection(password="revoked"), GraphAuthError,
     "AADSTS7000215: Invalid client secret provided"),
    ("token without Mail.Send", without_mail_send, AccessDeniedError,
     "ErrorAccessDenied: Access is denied. Check credentials and try again. -- the app registration lacks an "
     "application permission: grant Mail.Send (sending) and Mail.ReadWrite (drafts) in Entra, then an admin "
     "must grant consent"),
    ("mailbox not enabled for REST", onprem_mailbox, MailboxNotEnabledError, "no Exchange Online mailbox"),
    # -- recipient allow-list -----------------------------------------------------------------------------
    ("recipient outside the allow-list", outside_allow_list, MessageValidationError,
     "bcc: 'eve@evil.example' is outside the allowed recipient domains (*.fabrikam.com, contoso.com): remove "
     "it, or add its domain to the connection's allowed_recipient_domains"),
    ("allow-list entry that is not a domain", extra(allowed_recipient_domains="contoso"), GraphConfigError,
     "extra allowed_recipient_domains: 'contoso' is not a domain"),
    ("draft edited to an outside recipient", draft_edited_to_outsider, MessageValidationError,
     "ccRecipients: 'x@gmail.com' is outside the allowed recipient domains (contoso.com)"),
]
# What the hint adds, for the rows whose message must also say how to fix it.
HINTS = {
    "expired client secret": "create a new one in Entra and update the connection's password",
    "wrong or revoked client secret": "fix the connection's password",
}


GRAPH_JUDGED = {"draft id that does not exist": 404, "mailbox not enabled for REST": 404,
                "token without Mail.Send": 403}


def test_the_table_is_large_enough():
    assert len(ROWS) >= 40 and len({row[0] for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize(("case", "action", "error", "text"), ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_gets_a_clear_error_and_sends_nothing(connect, graph_emulator, tmp_path, case, action, error,
                                                         text):
    with pytest.raises(error) as raised:
        action(Ctx(connect, graph_emulator, tmp_path))
    assert text in str(raised.value)
    assert HINTS.get(case, "") in str(raised.value)
    changes = graph_emulator.side_effect_requests
    if case in GRAPH_JUDGED:
        assert [(r["method"], r["status"]) for r in changes] == [("POST", GRAPH_JUDGED[case])]
    else:
        assert changes == [], json.dumps(changes)
    assert graph_emulator.sends == 0
