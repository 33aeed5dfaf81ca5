"""Mail-merge rows with hostile values, and the allow-list over every address a reply can reach: one row
each, in the style of test_bad_inputs.py.

A merge task is built in a real DAG, rendered by Airflow and executed against the emulator; the Reply-To
rows go through every other road (the hook with a Message, a Graph dict or MIME, the email backend, the
notifier, a draft a reviewer edited). Every row asserts the error's type, the field it names
(``rows[i].field`` for a merge) and its text, that it is permanent (the task fails without its retries),
that the emulator saw no request with a side effect and that no mailbox holds a message. Row values that
are hostile but harmless (a display name holding an address, quotes, commas) are sent, and must reach
the row's own address only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import DAG, AirflowFailException
from helpers import as_context, at_the_recursion_limit

from airflow_graph_mail import MessageValidationError
from airflow_graph_mail.mail.message import Message

CONN_ID = "graph_mail_merge_table"
README_TO = "{{ row.name }} <{{ row.email }}>"  # the README's own merge recipient
RECURSIVE = "{% macro again(n) %}{{ again(n + 1) }}{% endmacro %}{{ again(0) }}"


@dataclass
class Ctx:
    connect: Callable
    emulator: object
    tmp: Path

    def hook(self, allow: str | None = None):
        return self.connect(CONN_ID, extra={"allowed_recipient_domains": allow} if allow else None)


class TaskInstance:
    """What a merge task asks of its task instance once its mails are out: somewhere to push outcomes."""

    def __init__(self):
        self.pushed: dict = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


def run_merge(ctx: Ctx, rows, *, allow: str | None = None, **fields):
    """A merge task as Airflow runs it: its own fields rendered, then executed. A permanent error fails the
    task at once (AirflowFailException); the table checks the typed error that caused it."""
    from airflow_graph_mail.operators.mail_merge import GraphMailMergeOperator

    ctx.hook(allow)
    with DAG("merge_bad_rows", schedule=None, template_searchpath=[str(ctx.tmp)]):
        merge = GraphMailMergeOperator(task_id="merge", rows=rows, graph_mail_conn_id=CONN_ID,
                                       idempotency_key="merge-table-{{ ds }}",
                                       **{"to": "{{ row.email }}", "subject": "Statement", **fields})
    context = as_context({"ds": "2026-11-20", "params": {}, "ti": TaskInstance()})
    merge.render_template_fields(context)
    try:
        return merge.execute(context)
    except AirflowFailException as err:  # not retried: a retry cannot fix bad input
        assert err.__cause__ is not None
        raise err.__cause__ from None


def merge(rows, **fields):
    return lambda ctx: run_merge(ctx, rows, **fields)


def dora(**values):
    return [{"name": "Dora", "email": "dora@example.com", **values}]


def reports_of(row_id: str, *, shape: str = "path"):
    """A merge attaching each row's own report, ``reports/{{ row.id }}.pdf``, from a folder holding two."""
    def run(ctx):
        folder = ctx.tmp / "reports"
        folder.mkdir(exist_ok=True)
        for name in ("ann.pdf", "bob.pdf"):
            (folder / name).write_bytes(b"%PDF-1.4 " + name.encode())
        (ctx.tmp / "secret.pdf").write_bytes(b"%PDF-1.4 not for customers")
        path = f"{folder}/{{{{ row.id }}}}.pdf"
        attachments = {"path": [path], "dict": [{"path": path}], "inline": None}[shape]
        inline = {"chart": path} if shape == "inline" else None
        return run_merge(ctx, dora(id=row_id), attachments=attachments, inline_images=inline,
                         body='<img src="cid:chart">' if inline else "")
    return run


def hook_send(message, allow="example.com"):
    return lambda ctx: ctx.hook(allow).send_mail(message)


def backend(allow="example.com", **kwargs):
    """Airflow's [email] backend, as Airflow calls it."""
    def call(ctx):
        from airflow_graph_mail.email_backend import send_email

        ctx.hook(allow)
        send_email("ann@example.com", "alert", "<p>x</p>", conn_id=CONN_ID, **kwargs)
    return call


def notify(allow="example.com", **kwargs):
    def call(ctx):
        from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

        ctx.hook(allow)
        GraphMailNotifier(to="ann@example.com", subject="alert", html_content="<p>x</p>", graph_mail_conn_id=CONN_ID,
                          **kwargs).notify({})
    return call


def mime(headers: str, allow="example.com"):
    return lambda ctx: ctx.hook(allow).send_mime(f"To: ann@example.com\r\n{headers}Subject: x\r\n\r\nbody\r\n")


def draft_given_outside_reply_to(ctx):
    """A reviewer set "Direct replies to" an outside address in Outlook; checked again when it is sent."""
    from graph_http import get_token

    draft = ctx.hook().create_draft(Message(to="ann@example.com", subject="review me"))
    http = ctx.hook().client.transport.session
    token = get_token(http, ctx.emulator).json()["access_token"]
    edited = http.patch(f"{ctx.emulator.base_url}/v1.0/users/{ctx.emulator.default_sender}/messages/{draft['id']}",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"replyTo": [{"emailAddress": {"address": "eve@evil.example"}}]})
    assert edited.status_code == 200, edited.text
    ctx.emulator.inspect.request_log.clear()
    ctx.hook("example.com").send_draft(draft["id"])


ROWS = [
    # (case, action, error type, field named, text)
    # -- a row value in an attachment path names one file: no glob, no walking up ---------------------------
    ("row value as a glob in an attachment path", reports_of("*"), MessageValidationError, "rows[0].attachments",
     "matched no file"),
    ("row value as a glob in an attachment dict", reports_of("[ab]*", shape="dict"), MessageValidationError,
     "rows[0].attachments", "matched no file"),
    ("row value walking up from the reports folder", reports_of("../secret"), MessageValidationError,
     "rows[0].attachments", "'../secret' cannot name a parent folder ('..')"),
    ("row value walking up in an inline image", reports_of("../secret", shape="inline"), MessageValidationError,
     "rows[0].inline_images", "'../secret' cannot name a parent folder ('..')"),
    # -- a row value fills one address or one display name, never more ----------------------------------
    ("email closing its bracket to add an address", merge(dora(email="gus@example.com>, <eve@evil.example"),
                                                         to=README_TO), MessageValidationError, "rows[0].to",
     "'gus@example.com>, <eve@evil.example' is not a valid e-mail address"),
    ("email with a comma and a second address", merge(dora(email="gus@example.com, eve@evil.example")),
     MessageValidationError, "rows[0].to", "'gus@example.com, eve@evil.example' is not a valid e-mail address"),
    ("email with a semicolon in cc", merge(dora(boss="boss@example.com; eve@evil.example"), cc="{{ row.boss }}"),
     MessageValidationError, "rows[0].cc", "'boss@example.com; eve@evil.example' is not a valid e-mail address"),
    ("email breaking out of a quoted name", merge(dora(email='x" <dora@example.com>, "y'),
                                                  to='"{{ row.name }}" <{{ row.email }}>'), MessageValidationError,
     "rows[0].to", "is not a valid e-mail address"),
    ("email as a local part with a domain after it", merge(dora(user="eve@evil.example>, <x"),
                                                          to="{{ row.user }}@example.com"),
     MessageValidationError, "rows[0].to", "'eve@evil.example>, <x@example.com' is not a valid e-mail address"),
    ("email with a line break", merge(dora(email="dora@example.com\r\nBcc: eve@evil.example")),
     MessageValidationError, "rows[0].to", "line break '\\r' in recipient"),
    ("name with a line break", merge(dora(name="Dora\r\nBcc: eve@evil.example"), to=README_TO),
     MessageValidationError, "rows[0].to", "line break '\\r' in recipient"),
    ("name with a Unicode line separator", merge(dora(name="Dora\u2028Bcc: eve@evil.example"), to=README_TO),
     MessageValidationError, "rows[0].to", "line break '\\u2028' in recipient"),
    ("list value holding two addresses in one entry", merge([{"emails": ["ann@example.com",
                                                                         "bob@example.com, eve@evil.example"]}],
                                                            to="{{ row.emails }}"), MessageValidationError,
     "rows[0].to", "'bob@example.com, eve@evil.example' is not a valid e-mail address"),
    ("list value with a bracketed address", merge([{"emails": ["Eve <eve@evil.example>"]}], to="{{ row.emails }}"),
     MessageValidationError, "rows[0].to", "'Eve <eve@evil.example>' is not a valid e-mail address"),
    ("Graph dict recipient with two addresses in its value", merge(dora(email="dora@example.com, eve@evil.example"),
                                                                   to=[{"emailAddress": {"address": "{{ row.email }}",
                                                                                         "name": "{{ row.name }}"}}]),
     MessageValidationError, "rows[0].to", "'dora@example.com, eve@evil.example' is not a valid e-mail address"),
    ("reply_to with a second address", merge(dora(manager="help@example.com, eve@evil.example"),
                                             reply_to="{{ row.manager }}"), MessageValidationError,
     "rows[0].reply_to", "'help@example.com, eve@evil.example' is not a valid e-mail address"),
    ("hostile email in the second row", merge([*dora(), *dora(email="eve@example.com>, <eve@evil.example")],
                                              to=README_TO), MessageValidationError, "rows[1].to",
     "'eve@example.com>, <eve@evil.example' is not a valid e-mail address"),
    ("empty address in a recipient list", merge(dora(boss=""), cc=["boss@example.com", "{{ row.boss }}"]),
     MessageValidationError, "rows[0].cc[1]", "empty address: remove the entry or fill it in"),
    # -- a row value never adds a header -------------------------------------------------------------------
    ("subject with a line break", merge(dora(name="Dora\r\nBcc: eve@evil.example"), subject="Hi {{ row.name }}"),
     MessageValidationError, "rows[0].subject", "must not contain a line break or NUL"),
    ("header value with a line break", merge(dora(ref="q3\nBcc: eve@evil.example"),
                                             headers={"x-customer": "{{ row.ref }}"}), MessageValidationError,
     "rows[0].headers[x-customer]", "must not contain a line break or NUL"),
    ("attachment name with a line break", merge(dora(name="a\r\nBcc: eve@evil.example"),
                                                attachments=[("statement-{{ row.name }}.csv", "x\n")]),
     MessageValidationError, "rows[0].attachments", "a file name must not contain a line break"),
    ("attachment content type with a line break", merge(dora(kind="text/csv\r\nBcc: eve@evil.example"), attachments=[
        {"content": "x", "name": "a.csv", "content_type": "{{ row.kind }}"}]), MessageValidationError,
     "rows[0].attachments", "is not a media type like text/csv"),
    ("inline image content id with angle brackets", merge(dora(cid="logo>\r\n<eve"), body="<p>x</p>",
                                                          inline_images=[{"content": "x", "name": "logo.png",
                                                                          "content_id": "{{ row.cid }}"}]),
     MessageValidationError, "rows[0].inline_images", "must be text without spaces, angle brackets or control"),
    ("importance with a line break", merge(dora(level="high\r\nBcc: eve@evil.example"), importance="{{ row.level }}"),
     MessageValidationError, "rows[0].importance", "is not one of low, normal, high"),
    # -- key_field: one recipient, whatever the case ---------------------------------------------------------
    ("key_field values differing only in case", merge([{"email": "Fay@Example.com"}, {"email": "fay@example.com"}],
                                                      key_field="email"), MessageValidationError, "rows[1].email",
     "'fay@example.com' is also the key of rows[0] ('Fay@Example.com')"),
    ("key_field values differing only in spaces", merge([{"email": "fay@example.com"}, {"email": " fay@example.com"}],
                                                        key_field="email"), MessageValidationError, "rows[1].email",
     "is also the key of rows[0]"),
    # -- a user template that raises names its field -------------------------------------------------------
    ("template text holding the marks of a row value", merge(dora(), to="{{ row.name }} <x\ue000ab\ue001@example.com>"),
     MessageValidationError, "to", "holds U+E000 or U+E001, the private-use characters the merge marks row values"),
    ("template dividing by zero", merge(dora(), subject="{{ 1 / 0 }}"), MessageValidationError, "rows[0].subject",
     "ZeroDivisionError: division by zero"),
    ("template recursing forever", merge(dora(), body=RECURSIVE), MessageValidationError, "rows[0].body",
     "RecursionError: maximum recursion depth exceeded"),
    ("filter raising TypeError on a row value", merge([*dora(amount=3), *dora(amount="n/a")],
                                                      body="{{ row.amount | round }}"), MessageValidationError,
     "rows[1].body", "TypeError: "),
    ("template raising KeyError", merge(dora(), to="{{ {}.pop('missing') }}@example.com"), MessageValidationError,
     "rows[0].to", "KeyError: 'missing'"),
    # -- Reply-To and the allow-list, every shape --------------------------------------------------------
    ("merge reply_to outside the allow-list", merge(dora(manager="eve@evil.example"), reply_to="{{ row.manager }}",
                                                    allow="example.com"), MessageValidationError, "rows[0].reply_to",
     "'eve@evil.example' is outside the allowed recipient domains (example.com)"),
    ("Message reply_to outside the allow-list", hook_send(Message(to="ann@example.com", reply_to="eve@evil.example")),
     MessageValidationError, "reply_to", "'eve@evil.example' is outside the allowed recipient domains"),
    ("Graph dict replyTo outside the allow-list", hook_send({"toRecipients": [
        {"emailAddress": {"address": "ann@example.com"}}], "replyTo": [{"emailAddress": {
            "address": "eve@evil.example"}}]}), MessageValidationError, "replyTo",
     "'eve@evil.example' is outside the allowed recipient domains"),
    ("Graph dict ReplyTo in another case outside the allow-list", hook_send({"ToRecipients": [
        {"EmailAddress": {"Address": "ann@example.com"}}], "REPLYTO": [{"EMAILADDRESS": {
            "ADDRESS": "eve@evil.example"}}]}), MessageValidationError, "replyTo",
     "'eve@evil.example' is outside the allowed recipient domains"),
    ("MIME Reply-To outside the allow-list", mime("Reply-To: Help <eve@evil.example>\r\n"), MessageValidationError,
     "Reply-To", "'eve@evil.example' is outside the allowed recipient domains"),
    ("MIME Reply-To given twice", mime("Reply-To: help@example.com\r\nReply-To: eve@evil.example\r\n"),
     MessageValidationError, "Reply-To", "appears twice in the MIME headers"),
    ("MIME Reply-To read two ways", mime("Reply-To: help@example.com; eve@evil.example\r\n"),
     MessageValidationError, "Reply-To", "cannot be read strictly"),
    ("MIME Mail-Followup-To outside the allow-list", mime("Mail-Followup-To: eve@evil.example\r\n"),
     MessageValidationError, "Mail-Followup-To", "'eve@evil.example' is outside the allowed recipient domains"),
    ("MIME read receipts to an outside address", mime("Disposition-Notification-To: eve@evil.example\r\n"),
     MessageValidationError, "Disposition-Notification-To", "'eve@evil.example' is outside the allowed"),
    ("email backend Reply-To outside the allow-list", backend(custom_headers={"Reply-To": "eve@evil.example"}),
     MessageValidationError, "reply_to", "'eve@evil.example' is outside the allowed recipient domains"),
    ("email backend MIME Reply-To outside the allow-list", backend(custom_headers={
        "Reply-To": "eve@evil.example", "Auto-Submitted": "auto-generated"}), MessageValidationError, "Reply-To",
     "'eve@evil.example' is outside the allowed recipient domains"),
    ("email backend read receipts to an outside address", backend(custom_headers={
        "Disposition-Notification-To": "eve@evil.example"}), MessageValidationError, "Disposition-Notification-To",
     "'eve@evil.example' is outside the allowed recipient domains"),
    ("notifier Reply-To outside the allow-list", notify(custom_headers={"Reply-To": "eve@evil.example"}),
     MessageValidationError, "reply_to", "'eve@evil.example' is outside the allowed recipient domains"),
    ("draft given an outside Reply-To", draft_given_outside_reply_to, MessageValidationError, "replyTo",
     "'eve@evil.example' is outside the allowed recipient domains (example.com)"),
]

# Rows that leave one message behind on purpose: the draft a person edited.
KEPT = {"draft given an outside Reply-To": 1}


def stored_messages(emulator) -> int:
    return sum(sum(folders.values()) for folders in emulator.inspect.folder_counts().values())


@pytest.mark.parametrize(("case", "action", "error", "field", "text"), ROWS, ids=[row[0] for row in ROWS])
def test_bad_merge_row_gets_a_clear_error_and_sends_nothing(connect, graph_emulator, tmp_path, case, action, error,
                                                            field, text):
    with at_the_recursion_limit("RecursionError" in text), pytest.raises(error) as raised:
        action(Ctx(connect, graph_emulator, tmp_path))
    err = raised.value
    assert isinstance(err, MessageValidationError) and err.permanent  # the GraphMailError that names its field
    assert text in str(err), str(err)
    assert err.field == field and str(err).startswith(f"{field}: "), str(err)
    assert graph_emulator.inspect.side_effect_requests == [], json.dumps(graph_emulator.inspect.side_effect_requests)
    assert graph_emulator.backend.delivery.sends == 0
    assert stored_messages(graph_emulator) == KEPT.get(case, 0)


# (case, rows, fields, [(address, display name)] each row's mail must reach, and nothing else)
HOSTILE_BUT_VALID = [
    ("name holding an address and a comma", dora(name="Dora <eve@evil.example>, Dora"), {"to": README_TO},
     [("dora@example.com", "Dora <eve@evil.example>, Dora")]),
    ("name with quotes and backslashes", dora(name='Dora "\\" <eve@evil.example>'), {"to": README_TO},
     [("dora@example.com", 'Dora "\\" <eve@evil.example>')]),
    ("name with an unbalanced quote, quoted by the template", dora(name='Dora", <eve@evil.example'),
     {"to": '"{{ row.name }}" <{{ row.email }}>'}, [("dora@example.com", 'Dora", <eve@evil.example')]),
    ("name with a semicolon", dora(name="Smith; eve@evil.example"), {"to": README_TO},
     [("dora@example.com", "Smith; eve@evil.example")]),
    ("name that is an address", dora(name="eve@evil.example"), {"to": README_TO},
     [("dora@example.com", "eve@evil.example")]),
    ("first and last name with punctuation", [{"first": "Doe, Jane", "last": "<CFO>", "email": "jane@example.com"}],
     {"to": "{{ row.first }} {{ row.last }} <{{ row.email }}>"}, [("jane@example.com", "Doe, Jane <CFO>")]),
    ("a list value: one recipient per entry", [{"emails": ["ann@example.com", "bob@example.com"]}],
     {"to": "{{ row.emails }}, boss@example.com"},
     [("ann@example.com", ""), ("bob@example.com", ""), ("boss@example.com", "")]),
    ("an empty cc", dora(boss=""), {"to": README_TO, "cc": "{{ row.boss }}"}, [("dora@example.com", "Dora")]),
    ("a name holding the marks of a row value", dora(name="\ue0001\ue001 \ue0000\ue001"), {"to": README_TO},
     [("dora@example.com", "\ue0001\ue001 \ue0000\ue001")]),
    ("a cc with no template in it", dora(), {"to": README_TO, "cc": "Boss <boss@example.com>"},
     [("dora@example.com", "Dora"), ("boss@example.com", "Boss")]),
]


@pytest.mark.parametrize(("case", "rows", "fields", "expected"), HOSTILE_BUT_VALID,
                         ids=[row[0] for row in HOSTILE_BUT_VALID])
def test_hostile_row_values_reach_the_row_only(connect, graph_emulator, tmp_path, case, rows, fields, expected):
    counts = run_merge(Ctx(connect, graph_emulator, tmp_path), rows, **fields)
    assert counts == {"sent": len(rows)}
    (sent,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
    got = [(r["emailAddress"]["address"], r["emailAddress"].get("name", ""))
           for name in ("toRecipients", "ccRecipients") for r in sent.get(name, [])]
    assert got == expected
    for address, _ in expected:
        assert len(graph_emulator.inspect.messages(address)) == 1, address
    assert graph_emulator.inspect.messages("eve@evil.example") == []
    delivered = sum(folders.get("inbox", 0) for folders in graph_emulator.inspect.folder_counts().values())
    assert delivered == len(expected)  # nobody else got a copy
