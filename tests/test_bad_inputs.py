"""Bad inputs, one row each, in every shape the API accepts them: strings, lists, Recipient objects,
Graph-shaped dicts in any case, Message, MIME, the email backend, the notifier and the connection.

Every row asserts the error's type, the field it names and its text, that the emulator saw no request
with a side effect (any non-GET Graph call; token requests do not count), and that no mailbox holds a
message. Four things only Graph can tell: a draft id that does not exist or that it cannot parse (only
Exchange knows its ids' structure), a mailbox without Exchange Online, and a missing Mail.Send (Exchange
RBAC for Applications grants it without a claim in the token). For those the one POST was refused (404,
400, 403) and changed nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import make_certificate
from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError

from airflow_graph_mail import (
    AccessDeniedError,
    GraphAuthError,
    GraphConfigError,
    GraphMailError,
    ItemNotFoundError,
    MailboxNotEnabledError,
    MessageSizeError,
    MessageValidationError,
    NoLookupError,
    SendingLimitError,
)
from airflow_graph_mail.mail.message import Message
from airflow_graph_mail.mail.recipients import Recipient

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

    def backend(self, to="ann@example.com", *, allow=None, **kwargs):
        """Airflow's [email] backend, as Airflow calls it, on this table's connection."""
        from airflow_graph_mail.email_backend import send_email

        self.hook(extra={"allowed_recipient_domains": allow} if allow else None)
        return send_email(to, kwargs.pop("subject", "alert"), kwargs.pop("html", "<p>x</p>"),
                          conn_id="graph_mail_table", **kwargs)

    def notify(self, to="ann@example.com", *, allow=None, **kwargs):
        """GraphMailNotifier called as a callback is, on this table's connection."""
        from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

        self.hook(extra={"allowed_recipient_domains": allow} if allow else None)
        GraphMailNotifier(to=to, subject=kwargs.pop("subject", "alert"), html_content="<p>x</p>",
                          graph_mail_conn_id="graph_mail_table", **kwargs).notify({})

    def mime(self, raw: bytes, *, allow=None):
        self.hook(extra={"allowed_recipient_domains": allow} if allow else None).send_mime(raw)


def message(**fields):
    return lambda ctx: Message(**{"to": "ann@example.com", **fields})


def send(**fields):
    return lambda ctx: ctx.send(Message(**{"to": "ann@example.com", **fields}))


def connection(**changes):
    return lambda ctx: ctx.send(**changes)


def graph(**fields):
    """A Graph-shaped message dict, sent as given."""
    return lambda ctx: ctx.send({"subject": "x", "toRecipients": [{"emailAddress": {"address": "ann@example.com"}}],
                                 **fields})


def mime(headers: str, allow: str | None = None):
    return lambda ctx: ctx.mime(headers.encode() + b"Subject: x\r\n\r\nbody\r\n", allow=allow)


def operator(**arguments):
    """An operator built as a DAG file would build it (wrong argument types fail at parse time)."""
    def build(ctx):
        from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator
        from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator

        kind = GraphMailMergeOperator if "rows" in arguments else GraphSendMailOperator
        kind(task_id="send", to="ann@example.com", **arguments)
    return build


def many_files(ctx, count: int, limit: int | None = None):
    folder = ctx.tmp / "many"
    folder.mkdir()
    for index in range(count):
        (folder / f"part-{index:03d}.csv").write_text("x\n")
    options: dict[str, Any] = {"max_glob_matches": limit} if limit else {}
    Message(to="ann@example.com", attachments=[str(folder / "*.csv")], **options)


def non_utf8_file_name(ctx):
    folder = ctx.tmp / "latin1"
    folder.mkdir()
    (folder / os.fsdecode(b"r\xe9sum\xe9.csv")).write_text("x\n")
    Message(to="ann@example.com", attachments=[str(folder / "*.csv")])


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
    from airflow.providers.common.compat.sdk import DAG, AirflowFailException

    from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator

    for name, text in (files or {}).items():
        (ctx.tmp / name).write_text(text)
    with DAG("bad_templates", schedule=None, template_searchpath=[str(ctx.tmp)]):
        operator = GraphSendMailOperator(task_id="send", to="ann@example.com", subject="Report {{ ds }}",
                                         body=body)
    try:
        operator.render_template_fields({"ds": "2026-11-20", "params": {}})
    except AirflowFailException as err:  # a template error fails the task at once; the table checks its cause
        assert err.__cause__ is not None
        raise err.__cause__ from None


def expired_secret(ctx):
    app = ctx.emulator.entra.add_app(secret="old-secret", secret_expires_at=1.0)
    ctx.send(login=app.client_id, password="old-secret")


def without_mail_send(ctx):
    app = ctx.emulator.entra.add_app(secret="read-only", roles=["Mail.ReadWrite"])
    ctx.send(login=app.client_id, password="read-only")


def mail_send_only_retry(ctx):
    """An app granted Mail.Send alone, on a retry (the default delivery_guarantee: exactly once)."""
    app = ctx.emulator.entra.add_app(secret="send-only-secret", roles=["Mail.Send"])
    ctx.hook(login=app.client_id, password="send-only-secret").send_mail(Message(to="ann@example.com"),
                                                                         idempotency_key="k", check_first=True)


def outside_the_scope(ctx):
    """An app restricted (Exchange RBAC for Applications) to another mailbox than the connection's sender."""
    app = ctx.emulator.entra.add_app(secret="scoped-secret", mailboxes=["reports@contoso.com"])
    ctx.hook(login=app.client_id, password="scoped-secret").send_mail(Message(to="ann@example.com"))


def outside_the_policy(ctx):
    app = ctx.emulator.entra.add_app(secret="policy-secret", mailboxes=["reports@contoso.com"], scope="access_policy")
    ctx.hook(login=app.client_id, password="policy-secret").send_mail(Message(to="ann@example.com"))


def over_the_window(ctx):
    """21 messages of 500 recipients: 500 more than Exchange Online lets one mailbox send in 24 hours."""
    ctx.hook().send_many([Message(to="ann@example.com", bcc=[f"b{i}@example.com" for i in range(499)])
                          for _ in range(21)])


def onprem_mailbox(ctx):
    ctx.emulator.backend.store.add_user("onprem@contoso.com", rest_enabled=False)
    ctx.hook().send_mail(Message(to="ann@example.com"), sender="onprem@contoso.com")


def certificate_and_secret(ctx):
    bundle, _ = make_certificate()
    ctx.send(extra={"certificate_private_key": bundle.decode()})


def huge_body(ctx):
    ctx.send(Message(to="a@example.com", body="x" * (36 * MB)))


def outside_allow_list(ctx):
    ctx.hook(extra={"allowed_recipient_domains": "contoso.com, *.fabrikam.com"}).send_mail(
        Message(to="ann@contoso.com", cc="bob@eu.fabrikam.com", bcc="eve@evil.example"))


def draft_edited_to_outsider(ctx):
    """A person added an outside address in Outlook; the allow-list is checked again at send time."""
    from graph_http import get_token

    draft = ctx.hook().create_draft(Message(to="ann@contoso.com", subject="review me"))
    http = ctx.hook().client.transport.session
    token = get_token(http, ctx.emulator).json()["access_token"]
    edited = http.patch(f"{ctx.emulator.base_url}/v1.0/users/{ctx.emulator.default_sender}/messages/{draft['id']}",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"ccRecipients": [{"emailAddress": {"address": "x@gmail.com"}}]})
    assert edited.status_code == 200 and edited.json()["ccRecipients"][0]["emailAddress"]["address"] == "x@gmail.com"
    ctx.emulator.inspect.request_log.clear()
    ctx.hook(extra={"allowed_recipient_domains": "contoso.com"}).send_draft(draft["id"])


ROWS = [
    # (case, action, error type, field named, text)
    # -- recipients: strings ----------------------------------------------------------------------------
    ("malformed address", message(to="ann@"), MessageValidationError, "to", "'ann@' is not a valid e-mail address"),
    ("address without a domain dot", message(cc="ann@localhost"), MessageValidationError, "cc",
     "'ann@localhost' is not a valid e-mail address"),
    ("address with a space", message(to="ann smith@example.com"), MessageValidationError, "to",
     "'ann smith@example.com' is not a valid e-mail address"),
    ("duplicate address in one field", message(to="ann@example.com; ANN@example.com"), MessageValidationError, "to",
     "'ANN@example.com' is listed twice; remove one"),
    ("duplicate address across to and bcc", message(bcc="ann@example.com"), MessageValidationError, "bcc",
     "'ann@example.com' is also in to; keep it in one"),
    ("display name with an unquoted comma", message(to="Smith, Ann <ann@example.com>"), MessageValidationError,
     "to", "'Smith' is not a valid e-mail address (a display name with a comma must be quoted"),
    ("non-ASCII display name with an unquoted comma", message(to="Müller, Jürgen <jm@example.com>"),
     MessageValidationError, "to", "'Müller' is not a valid e-mail address (a display name with a comma"),
    ("display name with an unbalanced quote", message(to='"Smith <ann@example.com>'), MessageValidationError, "to",
     "unbalanced quote in '\"Smith <ann@example.com>': close the display name's quotes"),
    ("display name with a line break", message(to="Ann\r\nBcc: eve@evil.example <ann@example.com>"),
     MessageValidationError, "to", "line break '\\r' in recipient"),
    ("NUL in an address", message(to="ann\x00@example.com"), MessageValidationError, "to",
     "control character '\\x00' in recipient"),
    ("C1 control in a display name", message(cc="Ann\x85Smith <ann@example.com>"), MessageValidationError, "cc",
     "control character '\\x85' in recipient"),
    ("IDN domain too long once encoded", message(to="ann@" + "ä" * 60 + ".example"), MessageValidationError, "to",
     "is not a valid e-mail address"),
    ("no recipients", send(to=None, subject="x"), MessageValidationError, "to",
     "no recipients: give at least one address in to, cc or bcc"),
    ("over 500 recipients", send(to=[f"u{i}@example.com" for i in range(300)],
                                 cc=[f"c{i}@example.com" for i in range(201)]), MessageValidationError,
     "to/cc/bcc", "501 recipients; the mailbox accepts at most 500 per message (the connection's recipient_limit; "
     "Exchange Online's default is 500, an admin can set 1 to 1000): split the list"),
    ("over 1000 recipients, whatever the mailbox", message(to=[f"u{i}@example.com" for i in range(600)],
                                                           bcc=[f"b{i}@example.com" for i in range(401)]),
     MessageValidationError, "to/cc/bcc", "1001 recipients; Exchange Online accepts at most 1000 per message"),
    ("over a recipient_limit an admin lowered", lambda ctx: ctx.hook(extra={"recipient_limit": 2}).send_mail(
        Message(to=["a@example.com", "b@example.com"], bcc="c@example.com")), MessageValidationError, "to/cc/bcc",
     "3 recipients; the mailbox accepts at most 2 per message (the connection's recipient_limit"),
    ("Graph dict over the recipient_limit", lambda ctx: ctx.hook(extra={"recipient_limit": 1}).send_mail(
        {"toRecipients": [{"emailAddress": {"address": "a@example.com"}}, {"emailAddress": {
            "address": "b@example.com"}}]}), MessageValidationError, "to/cc/bcc",
     "2 recipients; the mailbox accepts at most 1 per message"),
    ("MIME over the recipient_limit", lambda ctx: ctx.hook(extra={"recipient_limit": 1}).send_mime(
        b"To: a@example.com, b@example.com\r\nSubject: x\r\n\r\nx\r\n"), MessageValidationError, "to/cc/bcc",
     "2 recipients; the mailbox accepts at most 1 per message"),
    # -- recipients: lists, Recipient objects, Graph-shaped dicts ------------------------------------------
    ("empty address in a list", message(to=["ann@example.com", ""]), MessageValidationError, "to[1]",
     "empty address: remove the entry or fill it in"),
    ("line break in a list entry", message(to=["bob@example.com", "Ann\r\n <ann@example.com>"]),
     MessageValidationError, "to", "line break '\\r' in recipient"),
    ("not a string in a list", message(to=["ann@example.com", 42]), MessageValidationError, "to",
     "expected an e-mail address string, got int"),
    ("recipients as a number", message(to=123), MessageValidationError, "to",
     "expected addresses as a string or a list, got int"),
    ("Recipient object with a line break", message(to=[Recipient("ann@example.com", "Ann\rBcc: eve@evil.example")]),
     MessageValidationError, "to", "line break '\\r' in recipient 'ann@example.com'"),
    ("Graph dict in a Message with a control character",
     message(to=[{"EmailAddress": {"Name": "Ann\x07", "Address": "ann@example.com"}}]), MessageValidationError,
     "to", "control character '\\x07' in recipient"),
    ("Graph dict name with a line break", graph(toRecipients=[{"emailAddress": {
        "name": "Ann\r\nBcc: eve@evil.example", "address": "ann@example.com"}}]), MessageValidationError,
     "toRecipients", "line break '\\r' in recipient"),
    ("Graph dict recipient without an address", lambda ctx: ctx.send({"subject": "x", "toRecipients": [
        {"emailAddress": {"name": "Ann"}}]}), MessageValidationError, "toRecipients", "has no emailAddress.address"),
    ("Graph dict address that is not text", graph(ccRecipients=[{"emailAddress": {"address": 7}}]),
     MessageValidationError, "ccRecipients", "emailAddress.address must be text, got int"),
    ("Graph dict recipients not a list", graph(bccRecipients={"emailAddress": {"address": "a@example.com"}}),
     MessageValidationError, "bccRecipients", "must be a list, got dict"),
    ("Graph dict property in two spellings", lambda ctx: ctx.send({"subject": "a", "Subject": "b", "toRecipients": [
        {"emailAddress": {"address": "ann@example.com"}}]}), MessageValidationError, "message",
     "'subject' and 'Subject' are the same property"),
    ("Graph dict nested property in two spellings", graph(ccRecipients=[{"emailAddress": {
        "address": "a@example.com", "Address": "b@example.com"}}]), MessageValidationError,
     "message.ccRecipients[0].emailAddress", "'address' and 'Address' are the same property"),
    ("Graph dict with our key property given twice", lambda ctx: ctx.hook().send_mail(
        {"toRecipients": [{"emailAddress": {"address": "ann@example.com"}}], "SingleValueExtendedProperties": [
            {"Id": "String {CEF3C9B9-3E6A-4EA4-9224-11AEE7E01B3C} Name AirflowGraphMailIdempotencyKey",
             "Value": "mine"}]}, idempotency_key="ours"), MessageValidationError, "singleValueExtendedProperties",
     "already holds this provider's idempotency key property"),
    ("Graph dict contentBytes that is not base64", graph(attachments=[{
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt", "contentBytes": "not base64!"}]),
     MessageValidationError, "attachments[0].contentBytes", "is not valid base64"),
    ("sendMail payload given as the message", lambda ctx: ctx.send({"message": {"subject": "x"},
                                                                     "saveToSentItems": False}),
     MessageValidationError, "message", "this is a sendMail request body; give the message inside it"),
    # -- recipients: email backend and notifier ----------------------------------------------------------
    ("email backend recipient with a control character", lambda ctx: ctx.backend(["Ann\x00 <ann@example.com>"]),
     MessageValidationError, "to", "control character '\\x00' in recipient"),
    ("email backend recipients as a number", lambda ctx: ctx.backend(42), MessageValidationError, "to",
     "expected addresses as a string or a list, got int"),
    ("notifier recipient with a line break", lambda ctx: ctx.notify("Ann\n <ann@example.com>"),
     MessageValidationError, "to", "line break '\\n' in recipient"),
    ("notifier cc as a dict of the wrong shape", lambda ctx: ctx.notify(cc={"address": 5}),
     MessageValidationError, "cc", "emailAddress.address must be text, got int"),
    # -- sender ------------------------------------------------------------------------------------------
    ("sender that is not an address", lambda ctx: ctx.hook().send_mail(Message(to="ann@example.com"),
                                                                        sender="a b@x"),
     MessageValidationError, "sender", "'a b@x' is not a mailbox: give its address"),
    ("sender that is not text", lambda ctx: ctx.hook().create_draft(Message(to="ann@example.com"), sender=5),
     MessageValidationError, "sender", "expected a mailbox address, 'me' or a user's object id, got 5"),
    ("sender with a line break", lambda ctx: ctx.hook().send_mime(b"To: a@example.com\r\n\r\nx", sender="a@x.com\r\n"),
     MessageValidationError, "sender", "is not a mailbox"),
    ("connection sender that is not an address", extra(sender="reports at contoso"), GraphConfigError,
     "extra sender", "'reports at contoso' is not a mailbox"),
    ("email backend from_email that is not an address", lambda ctx: ctx.backend(from_email="alerts@"),
     MessageValidationError, "from_email", "'alerts@' is not a valid e-mail address"),
    # -- subject, headers, body -------------------------------------------------------------------------
    ("CR in the subject", message(subject="Report\rBcc: eve@evil.example"), MessageValidationError, "subject",
     "must not contain a line break or NUL ('\\r'"),
    ("LF in the subject", message(subject="Report\nfor Q3"), MessageValidationError, "subject",
     "must not contain a line break or NUL ('\\n'"),
    ("LF in a Graph dict subject", lambda ctx: ctx.send({"Subject": "Report\nBcc: eve@evil.example", "toRecipients": [
        {"emailAddress": {"address": "ann@example.com"}}]}), MessageValidationError, "subject",
     "must not contain a line break or NUL"),
    ("subject that is not text", message(subject={"q": 3}), MessageValidationError, "subject",
     "expected text, got dict"),
    ("body that is not text", message(body=b"<p>bytes</p>"), MessageValidationError, "body",
     "expected text, got bytes"),
    ("LF in a header value", message(headers={"x-report": "q3\nBcc: eve@evil.example"}), MessageValidationError,
     "headers[x-report]", "must not contain a line break or NUL"),
    ("NUL in a header value", message(headers={"x-report": "q3\x00"}), MessageValidationError, "headers[x-report]",
     "must not contain a line break or NUL"),
    ("header name with a space", message(headers={"x-foo bar": "1"}), MessageValidationError, "headers",
     "'x-foo bar' is not a valid header name"),
    ("header name with a colon", message(headers={"x-foo:bar": "1"}), MessageValidationError, "headers",
     "'x-foo:bar' is not a valid header name"),
    ("header name given twice in two cases", message(headers={"x-a": "1", "X-A": "2"}), MessageValidationError,
     "headers", "'x-a' and 'X-A' are the same header"),
    ("headers given as a string", message(headers="x-a: b"), MessageValidationError, "headers",
     "expected a dict of header name to value, got str"),
    ("header without x-", message(headers={"Reply-To": "eve@evil.example"}), MessageValidationError, "headers",
     "'Reply-To': Graph accepts only custom headers whose name starts with 'x-'"),
    ("Graph dict header name with CR LF", graph(internetMessageHeaders=[{"name": "x-a\r\nBcc", "value": "e@evil.x"}]),
     MessageValidationError, "internetMessageHeaders", "is not a valid header name"),
    ("email backend header name injecting Bcc", lambda ctx: ctx.backend(
        custom_headers={"Auto-Submitted: auto\r\nBcc": "eve@evil.example"}), MessageValidationError,
     "custom_headers", "is not a valid header name"),
    ("email backend header value with LF", lambda ctx: ctx.backend(
        custom_headers={"Auto-Submitted": "auto\nBcc: eve@evil.example"}), MessageValidationError,
     "custom_headers[Auto-Submitted]", "must not contain a line break or NUL"),
    ("email backend header that routes mail", lambda ctx: ctx.backend(custom_headers={"Bcc": "eve@evil.example"}),
     MessageValidationError, "custom_headers", "'Bcc' cannot be set as a custom header; use to, cc and bcc"),
    ("email backend headers as a string", lambda ctx: ctx.backend(custom_headers="X-A: b"), MessageValidationError,
     "custom_headers", "expected a dict of header name to value, got str"),
    ("notifier header name with a space", lambda ctx: ctx.notify(custom_headers={"Auto Submitted": "auto"}),
     MessageValidationError, "custom_headers", "'Auto Submitted' is not a valid header name"),
    ("unknown body type", message(body_type="markdown"), MessageValidationError, "body_type",
     "'markdown' is not one of html, text"),
    ("unknown importance", message(importance="urgent"), MessageValidationError, "importance",
     "'urgent' is not one of low, normal, high"),
    ("cid: without its inline image", message(body='<img src="cid:chart">'), MessageValidationError, "body",
     "cid:chart"),
    # -- MIME ------------------------------------------------------------------------------------------
    ("MIME recipients separated by semicolons", mime("To: ann@contoso.com; eve@evil.example\r\n"),
     MessageValidationError, "To", "cannot be read strictly"),
    ("MIME recipient with a comment", mime("To: ann@contoso.com (Ann)\r\n"), MessageValidationError, "To",
     "'ann@contoso.com (Ann)' is not a valid e-mail address"),
    ("MIME To header given twice", mime("To: ann@contoso.com\r\nTo: eve@evil.example\r\n"), MessageValidationError,
     "To", "appears twice in the MIME headers"),
    ("MIME without recipients", mime("From: a@contoso.com\r\n"), MessageValidationError, "mime",
     "no recipients: the MIME has no To, Cc or Bcc header"),
    ("MIME Resent-Bcc outside the allow-list", mime("To: ann@contoso.com\r\nResent-Bcc: eve@evil.example\r\n",
                                                   allow="contoso.com"), MessageValidationError, "Resent-Bcc",
     "'eve@evil.example' is outside the allowed recipient domains (contoso.com)"),
    ("MIME non-ASCII local part", lambda ctx: ctx.backend("jürgen@example.com", custom_headers={"Auto-Submitted": "x"}),
     MessageValidationError, "to", "a non-ASCII local part cannot be written in a MIME header"),
    ("MIME over 4 MB", lambda ctx: ctx.hook().send_mime(Message(
        to="a@example.com", attachments=[("big.bin", b"x" * 3_100_000)]).to_mime()), MessageSizeError, "mime",
     "Graph accepts at most 4 MB per request"),
    ("MIME that is not bytes", lambda ctx: ctx.hook().send_mime(["To: a@example.com"]), MessageValidationError,
     "mime", "expected MIME bytes, text or an email.message.EmailMessage, got list"),
    # -- templates (rendered by Airflow, as in a task) ------------------------------------------------
    ("template syntax error", lambda ctx: rendered(ctx, "<p>{{ ds </p>"), TemplateSyntaxError, None,
     "unexpected '/'"),
    ("undefined template variable", lambda ctx: rendered(ctx, "<p>Dear {{ customer_name }}</p>"), UndefinedError,
     None, "'customer_name' is undefined"),
    ("missing template file", lambda ctx: rendered(ctx, "statement_missing.html"), TemplateNotFound, None,
     "statement_missing.html"),
    ("undefined variable in a template file", lambda ctx: rendered(
        ctx, "statement.html", {"statement.html": "<p>{{ balance }}</p>"}), UndefinedError, None,
     "'balance' is undefined"),
    # -- attachments ---------------------------------------------------------------------------------
    ("missing attachment", message(attachments=["/nonexistent/report.csv"]), MessageValidationError, "attachments",
     "file not found: /nonexistent/report.csv"),
    ("unreadable attachment", unreadable, MessageValidationError, "attachments", "file is not readable:"),
    ("directory as attachment", lambda ctx: Message(to="a@example.com", attachments=[str(ctx.tmp)]),
     MessageValidationError, "attachments", "not a regular file:"),
    ("glob matching nothing", lambda ctx: Message(to="a@example.com", attachments=[str(ctx.tmp / "*.xlsx")]),
     MessageValidationError, "attachments", "matched no file"),
    ("glob matching over 500 files", lambda ctx: many_files(ctx, 501), MessageValidationError, "attachments",
     "matched 501 files, more than the limit of 500; narrow the pattern (or raise max_glob_matches)"),
    ("glob over a limit of its own", lambda ctx: many_files(ctx, 4, limit=3), MessageValidationError, "attachments",
     "matched 4 files, more than the limit of 3"),
    ("attachments as a number", message(attachments=123), MessageValidationError, "attachments",
     "expected a path, a list of sources or a dict, got int"),
    ("inline images as a number", message(inline_images=5), MessageValidationError, "inline_images",
     "expected {content_id: source} or a list of sources, got int"),
    ("file name that is not UTF-8", non_utf8_file_name, MessageValidationError, "attachments",
     "the file name is not valid UTF-8"),
    ("file name with a NUL", message(attachments=[("a\x00.csv", b"x")]), MessageValidationError, "attachments",
     "a file name must not contain a line break or control character"),
    ("attachment flag that is not a flag", message(attachments=[{"content": "x", "name": "a.txt",
                                                                 "is_inline": "maybe"}]),
     MessageValidationError, "attachments", "a.txt: is_inline must be true or false, got 'maybe'"),
    ("attachment content type that is not a media type", message(attachments=[{
        "content": "x", "name": "a.txt", "content_type": "text/plain\r\nBcc: e@evil.example"}]),
     MessageValidationError, "attachments", "is not a media type like text/csv"),
    ("attachment over 150 MB", lambda ctx: Message(to="a@example.com", attachments=[
        sparse(ctx, "huge.bin", 151 * MB)]), MessageValidationError, "attachments",
     "huge.bin is 151.0 MB; Graph accepts at most 150 MB per attachment"),
    ("message over the size limit", lambda ctx: ctx.send(Message(to="a@example.com", attachments=[
        sparse(ctx, "big.bin", 36 * MB)])), MessageSizeError, "attachments",
     "the message is 36.0 MB but the limit is 35 MB (connection setting max_message_size_mb"),
    ("body over the size limit", huge_body, MessageSizeError, "body",
     "the message is 36.0 MB but the limit is 35 MB (connection setting max_message_size_mb"),
    ("attachment with no name", message(attachments=[("", b"x")]), MessageValidationError, "attachments",
     "needs a file name"),
    ("attachment dict with two sources", message(attachments=[{"path": "/a", "content": "b", "name": "c"}]),
     MessageValidationError, "attachments", "needs exactly one of path, uri, content or content_base64"),
    # -- operator arguments (checked when the DAG file is parsed) -----------------------------------------
    ("save_to_sent_items as text", operator(save_to_sent_items="false"), GraphConfigError, "save_to_sent_items",
     "expected bool, got 'false'"),
    ("idempotency key as a number", operator(idempotency_key=5), GraphConfigError, "idempotency_key",
     "expected str or bool, got 5"),
    ("mail merge concurrency as text", operator(rows=[], concurrency="4"), GraphConfigError, "concurrency",
     "expected int, got '4'"),
    ("mail merge concurrency too high", operator(rows=[], concurrency=8), GraphConfigError, "concurrency",
     "Graph allows 1 to 4 concurrent requests per mailbox"),
    ("mail merge over_limit unknown", operator(rows=[], over_limit="wait"), GraphConfigError, "over_limit",
     "over_limit: 'wait'; use 'fail' (rows over the mailbox's 24-hour window fail the task before anything is "
     "sent) or 'defer'"),
    ("mail merge poke_interval of zero", operator(rows=[], poke_interval=0), GraphConfigError, "poke_interval",
     "poke_interval: 0; give the seconds between looks at the mailbox while a deferred merge waits (1 or more)"),
    ("mail merge poke_interval as text", operator(rows=[], poke_interval="60"), GraphConfigError, "poke_interval",
     "expected int or float, got '60'"),
    ("send_many over_limit unknown", lambda ctx: ctx.hook().send_many([Message(to="ann@example.com")],
                                                                      over_limit="later"), GraphConfigError,
     "over_limit", "over_limit: 'later'; use 'fail'"),
    ("a batch over the mailbox's 24-hour window", over_the_window, SendingLimitError, None,
     "the batch does not fit the mailbox's sending limits: 21 message(s) to 10,500 recipient(s)"),
    # -- drafts ---------------------------------------------------------------------------------------
    ("empty draft id", lambda ctx: ctx.hook().send_draft(" "), GraphConfigError, "message_id",
     "empty draft id; pass the id returned when the draft was created"),
    ("draft id that is not text", lambda ctx: ctx.hook().send_draft(["AAMk"]), GraphConfigError, "message_id",
     "expected the draft's id as text, got list"),
    ("draft id that does not exist", lambda ctx: ctx.hook().send_draft("AAMkAG" + "A" * 40), ItemNotFoundError,
     None, "ErrorItemNotFound"),
    ("draft id that Graph cannot parse", lambda ctx: ctx.hook().send_draft("AAMkAGnothere"), ItemNotFoundError, None,
     "ErrorInvalidIdMalformed"),
    # -- connection -----------------------------------------------------------------------------------
    ("connection without tenant", extra(tenant_id=None), GraphConfigError, "tenant_id",
     "extra 'tenant_id' is empty; set the directory (tenant) id"),
    ("connection without client id", connection(login=None), GraphConfigError, "login",
     "login (the app's client id) is empty"),
    ("connection without secret", connection(password=None), GraphConfigError, "password",
     "no credential; set the password (client secret), a certificate"),
    ("both a secret and a certificate", certificate_and_secret, GraphConfigError, "certificate_private_key",
     "several credentials are set (password, certificate_private_key); keep one and remove the others"),
    ("unknown cloud", extra(cloud="mars"), GraphConfigError, "cloud",
     "cloud: unknown cloud 'mars'; use one of global"),
    ("cloud that is not text", extra(cloud=["global"]), GraphConfigError, "cloud",
     "extra 'cloud' is list; give text"),
    ("malformed Graph URL", extra(graph_url="graph.example.com"), GraphConfigError, "graph_url",
     "graph_url: 'graph.example.com' is not a URL; expected https://host"),
    ("plain http to a remote host", extra(authority_url="http://login.example.com"), GraphConfigError,
     "authority_url", "authority_url: plain http:// is allowed only for a loopback host; use https://"),
    ("unclear tls_verify", extra(tls_verify="no"), GraphConfigError, "tls_verify",
     "extra 'tls_verify' is 'no'; leave it unset (verified), or give false"),
    ("missing CA bundle", extra(ca_bundle="/no/such/ca.pem"), GraphConfigError, "ca_bundle",
     "ca_bundle '/no/such/ca.pem' is not a file"),
    ("CA bundle that is not text", extra(ca_bundle=5), GraphConfigError, "ca_bundle",
     "extra 'ca_bundle' is int; give text"),
    ("message size limit not a number", extra(max_message_size_mb="lots"), GraphConfigError, "max_message_size_mb",
     "'max_message_size_mb' is 'lots'; give a number of MB from 1 to 150"),
    ("recipient limit over 1000", extra(recipient_limit=1001), GraphConfigError, "recipient_limit",
     "extra 'recipient_limit' is 1001; give a whole number from 1 to 1,000: the mailbox's recipients per message"),
    ("recipient limit of zero", extra(recipient_limit=0), GraphConfigError, "recipient_limit",
     "extra 'recipient_limit' is 0; give a whole number from 1 to 1,000"),
    ("recipient limit with a fraction", extra(recipient_limit="499.5"), GraphConfigError, "recipient_limit",
     "extra 'recipient_limit' is '499.5'; give a whole number"),
    ("daily recipient limit above Exchange's", extra(daily_recipient_limit=20000), GraphConfigError,
     "daily_recipient_limit", "give a whole number from 1 to 10,000: the mailbox's recipients per 24 hours "
     "(Exchange Online's limit is 10,000 and cannot be raised"),
    ("message rate above Exchange's", extra(message_rate_limit=60), GraphConfigError, "message_rate_limit",
     "extra 'message_rate_limit' is 60; give a whole number from 1 to 30"),
    ("message rate as a flag", extra(message_rate_limit=True), GraphConfigError, "message_rate_limit",
     "extra 'message_rate_limit' is True; give a whole number from 1 to 30"),
    ("unknown delivery guarantee", extra(delivery_guarantee="twice"), GraphConfigError, "delivery_guarantee",
     "extra 'delivery_guarantee' is 'twice'; use exactly_once (the default"),
    ("delivery guarantee that is not text", extra(delivery_guarantee=1), GraphConfigError, "delivery_guarantee",
     "extra 'delivery_guarantee' is int; give text"),
    ("a retry with Mail.Send only", mail_send_only_retry, NoLookupError, None,
     "this retry must look for what an earlier attempt sent, and Graph refused to let the app read the mailbox "
     "(403 ErrorAccessDenied"),
    ("sending from a mailbox outside the app's scope", outside_the_scope, AccessDeniedError, None,
     "If it has them, it is restricted to other mailboxes than airflow@contoso.com (Exchange RBAC for "
     "Applications' management scope"),
    ("sending from a mailbox outside an access policy", outside_the_policy, AccessDeniedError, None,
     "Access to OData is disabled. -- an application access policy keeps this app from mailbox "
     "airflow@contoso.com"),
    ("timeout of infinity", extra(timeout="inf"), GraphConfigError, "timeout",
     "extra 'timeout' is 'inf'; give a number of seconds (more than 0)"),
    ("timeout of zero", extra(timeout=0), GraphConfigError, "timeout",
     "extra 'timeout' is 0; give a number of seconds (more than 0)"),
    ("retry wait as a flag", extra(retry_max_wait=True), GraphConfigError, "retry_max_wait",
     "extra 'retry_max_wait' is True; give a number of seconds (0 or more)"),
    ("proxy that is not a URL", extra(proxies={"https": 5}), GraphConfigError, "proxies",
     "extra 'proxies' maps 'https' to 5; give a proxy URL"),
    ("proxy URL with its password in the error", extra(proxies={"https": "user:Pr0xy-Pa55@proxy"}), GraphConfigError,
     "proxies", "give a proxy URL"),
    ("expired client secret", expired_secret, GraphAuthError, None,
     "AADSTS7000222: The provided client secret keys for app"),
    ("wrong or revoked client secret", connection(password="revoked"), GraphAuthError, None,
     "AADSTS7000215: Invalid client secret provided"),
    ("token without Mail.Send", without_mail_send, AccessDeniedError, None,
     "ErrorAccessDenied: Access is denied. Check credentials and try again. -- the app registration lacks an "
     "application permission: grant Mail.Send (sending) and Mail.ReadWrite (drafts) in Entra, then an admin "
     "must grant consent"),
    ("mailbox not enabled for REST", onprem_mailbox, MailboxNotEnabledError, None, "no Exchange Online mailbox"),
    # -- recipient allow-list, every path -----------------------------------------------------------------
    ("recipient outside the allow-list", outside_allow_list, MessageValidationError, "bcc",
     "'eve@evil.example' is outside the allowed recipient domains (*.fabrikam.com, contoso.com): remove "
     "it, or add its domain to the connection's allowed_recipient_domains"),
    ("Graph dict in any case outside the allow-list", lambda ctx: ctx.hook(
        extra={"allowed_recipient_domains": "contoso.com"}).send_mail({"ToRecipients": [
            {"EmailAddress": {"Address": "ann@contoso.com"}}], "BccRecipients": [{"EMAILADDRESS": {
                "ADDRESS": "eve@evil.example"}}]}), MessageValidationError, "bccRecipients",
     "'eve@evil.example' is outside the allowed recipient domains (contoso.com)"),
    ("email backend MIME path outside the allow-list", lambda ctx: ctx.backend(
        "ann@contoso.com", bcc="eve@evil.example", custom_headers={"Auto-Submitted": "auto-generated"},
        allow="contoso.com"), MessageValidationError, "Bcc", "'eve@evil.example' is outside the allowed"),
    ("notifier outside the allow-list", lambda ctx: ctx.notify("ann@contoso.com, eve@evil.example",
                                                               allow="contoso.com"),
     MessageValidationError, "to", "'eve@evil.example' is outside the allowed recipient domains (contoso.com)"),
    ("allow-list entry that is not a domain", extra(allowed_recipient_domains="contoso"), GraphConfigError,
     "allowed_recipient_domains", "extra allowed_recipient_domains: 'contoso' is not a domain"),
    ("draft edited to an outside recipient", draft_edited_to_outsider, MessageValidationError, "ccRecipients",
     "'x@gmail.com' is outside the allowed recipient domains (contoso.com)"),
]
# What the hint adds, for the rows whose message must also say how to fix it.
HINTS = {
    "expired client secret": "create a new one in Entra and update the connection's password",
    "wrong or revoked client secret": "fix the connection's password",
}


GRAPH_JUDGED = {"draft id that does not exist": 404, "draft id that Graph cannot parse": 400,
                "mailbox not enabled for REST": 404, "token without Mail.Send": 403,
                "sending from a mailbox outside the app's scope": 403,
                "sending from a mailbox outside an access policy": 403}


# Rows that leave one message behind on purpose: the draft a person edited.
KEPT = {"draft edited to an outside recipient": 1}


def test_the_table_is_large_enough():
    assert len(ROWS) >= 120 and len({row[0] for row in ROWS}) == len(ROWS)


def stored_messages(emulator) -> int:
    return sum(sum(folders.values()) for folders in emulator.inspect.folder_counts().values())


@pytest.mark.parametrize(("case", "action", "error", "field", "text"), ROWS, ids=[row[0] for row in ROWS])
def test_bad_input_gets_a_clear_error_and_sends_nothing(connect, graph_emulator, tmp_path, case, action, error,
                                                         field, text):
    with pytest.raises(error) as raised:
        action(Ctx(connect, graph_emulator, tmp_path))
    err = raised.value
    assert text in str(err)
    assert HINTS.get(case, "") in str(err)
    if isinstance(err, MessageValidationError):
        assert err.field == field and str(err).startswith(f"{field}: ")
    elif field is not None:
        assert field in str(err)
    if error is not TemplateSyntaxError and error is not UndefinedError and error is not TemplateNotFound:
        assert isinstance(err, GraphMailError)  # one root for everything the provider raises
    assert "Pr0xy-Pa55" not in str(err)
    changes = graph_emulator.inspect.side_effect_requests
    if case in GRAPH_JUDGED:
        assert [(r["method"], r["status"]) for r in changes] == [("POST", GRAPH_JUDGED[case])]
    else:
        assert changes == [], json.dumps(changes)
        assert "Graph answered" not in str(err)  # only Graph's own answers are reported as such
    assert graph_emulator.backend.delivery.sends == 0
    assert stored_messages(graph_emulator) == KEPT.get(case, 0)
