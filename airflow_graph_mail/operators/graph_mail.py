"""Operators that render a mail from templates and task context and hand it to GraphMailHook.

Importing this module must stay cheap (the scheduler imports DAG files again and again): no msal,
no requests, no emulator; the message model is imported when a message is built, and the hook imports the
client only when it connects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, BaseOperatorLink, XCom

from airflow_graph_mail.airflow_face import (
    DEFAULT_CONN_ID,
    DRAFT_ID_KEY,
    WEB_LINK_KEY,
    check_options,
    fail_without_retries,
    push_outcomes,
    retried,
    sent_outcome,
)
from airflow_graph_mail.errors import GraphMailError
from airflow_graph_mail.hooks.graph_mail import GraphMailHook
from airflow_graph_mail.mail.idempotency import make_key
from airflow_graph_mail.mail.review import SELECT, sent_summary
from airflow_graph_mail.outcomes import Status
from airflow_graph_mail.rendering import DEFAULT_RENDER_TIMEOUT, FieldRendering, is_template_file

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_graph_mail.mail.message import Message


def body_type_for(body: Any) -> str | None:
    """html for .html/.htm, text for .txt; a .j2 file by the extension before it (report.txt.j2)."""
    if not is_template_file(body):
        return None
    name = body.lower()
    if name.endswith(".j2"):
        name = name[: -len(".j2")]
        return "text" if name.endswith(".txt") else "html"
    if name.endswith((".html", ".htm")):
        return "html"
    if name.endswith(".txt"):
        return "text"
    return None


class OpenInOutlookLink(BaseOperatorLink):
    """The draft's webLink, pushed to XCom by GraphDraftOperator."""

    name = "Open in Outlook"

    def get_link(self, operator, *, ti_key) -> str:
        return XCom.get_value(key=WEB_LINK_KEY, ti_key=ti_key) or ""


class _GraphMessageOperator(FieldRendering, BaseOperator):
    """Fields shared by the send and draft operators; only ``body`` may name a template file (see
    ``rendering.py``)."""

    template_fields: Sequence[str] = (
        "to", "cc", "bcc", "reply_to", "subject", "body", "body_type", "attachments", "inline_images",
        "importance", "headers", "sender", "idempotency_key",
    )
    template_fields_renderers = {"body": "html", "headers": "json", "attachments": "py", "inline_images": "py"}
    ui_color = "#cfe4f7"

    def __init__(
        self,
        *,
        to: str | list[str] | None = None,
        subject: str = "",
        body: str = "",
        body_type: str | None = None,
        cc: str | list[str] | None = None,
        bcc: str | list[str] | None = None,
        reply_to: str | list[str] | None = None,
        attachments: str | list | None = None,
        inline_images: dict | list | None = None,
        importance: str = "normal",
        headers: dict[str, str] | None = None,
        sender: str | None = None,
        idempotency_key: str | bool | None = None,
        graph_mail_conn_id: str = DEFAULT_CONN_ID,
        autoescape: bool = False,
        render_timeout: float | None = DEFAULT_RENDER_TIMEOUT,
        max_glob_matches: int = 500,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_options(idempotency_key=(idempotency_key, (str, bool)), graph_mail_conn_id=(graph_mail_conn_id, (str,)),
                      autoescape=(autoescape, (bool,)), render_timeout=(render_timeout, (int, float)),
                      max_glob_matches=(max_glob_matches, (int,)))
        self.autoescape = autoescape
        self.render_timeout = render_timeout
        self.max_glob_matches = max_glob_matches
        self.idempotency_key = idempotency_key
        self.to = to
        self.cc = cc
        self.bcc = bcc
        self.reply_to = reply_to
        self.subject = subject
        self.body = body
        self.body_type = body_type or body_type_for(body) or "html"
        self.attachments = [attachments] if isinstance(attachments, str) else (attachments or [])
        self.inline_images = inline_images
        self.importance = importance
        self.headers = headers or {}
        self.sender = sender
        self.graph_mail_conn_id = graph_mail_conn_id

    def build_message(self) -> Message:
        """Every field checked here, before the hook is even created."""
        from airflow_graph_mail.mail.message import Message  # the message model: ~20 ms a DAG file need not pay

        return Message(
            to=self.to, cc=self.cc, bcc=self.bcc, reply_to=self.reply_to, subject=self.subject,
            body=self.body, body_type=self.body_type, attachments=self.attachments,
            inline_images=self.inline_images, importance=self.importance, headers=self.headers,
            max_glob_matches=self.max_glob_matches,
        )

    def idempotency(self, context: Context, position: int | str | None = None) -> tuple[str | None, bool]:
        """(key, check_first) for the task's message, or for the one at ``position`` of many.

        By default the key names the task instance (dag_id/task_id/run_id/map_index/position) and is looked
        up only on a retry; a key of the user's own is always looked up; ``False`` turns keys off.
        """
        if self.idempotency_key is False:
            return None, False
        if isinstance(self.idempotency_key, str) and self.idempotency_key.strip():
            own = self.idempotency_key.strip()
            return (own if position is None else make_key(own, position)), True
        ti = context["ti"]
        key = make_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index, 0 if position is None else position)
        return key, retried(context)

    def get_hook(self) -> GraphMailHook:
        return GraphMailHook(graph_mail_conn_id=self.graph_mail_conn_id)


class GraphSendMailOperator(_GraphMessageOperator):
    """Send a mail through Microsoft Graph (sendMail).

    :param to: recipients: "Ann <ann@x.com>, bob@y.com" (',' or ';') or a list. (templated)
    :param subject: subject line. (templated)
    :param body: the body as an inline Jinja string, or a template file ending in .html, .htm, .txt
        or .j2, looked up next to the DAG file or in the DAG's template_searchpath. (templated)
    :param body_type: "html" or "text"; by default from the template file's extension, else html.
    :param cc: carbon-copy recipients. (templated)
    :param bcc: blind-copy recipients. (templated)
    :param reply_to: addresses replies go to. (templated)
    :param attachments: what to attach, any size up to 150 MB each: local paths or glob patterns
        (``"/reports/*.pdf"``), fsspec URIs or ObjectStoragePath ("s3://bucket/report.xlsx"),
        ``(name, bytes | text)`` pairs, or dicts ``{"path" | "uri" | "content" | "content_base64": ...,
        "name": ..., "content_type": ...}`` (e.g. from XCom). (templated)
    :param inline_images: images shown in the HTML body, ``{content_id: source}`` or a list of sources
        (content id = file name); reference them as ``<img src="{{ cid('chart.png') }}">``. (templated)
    :param importance: "low", "normal" or "high". (templated)
    :param headers: custom internet headers; names must start with "x-". (templated)
    :param sender: the mailbox to send from; defaults to the connection's ``sender``. (templated)
    :param save_to_sent_items: keep a copy in the sender's Sent Items (needed to recognise a mail an
        earlier try already sent).
    :param idempotency_key: tags the mail so that it is sent once even when Graph's answer is lost or the
        task is retried. By default it names the task instance; give your own (e.g. "report-{{ ds }}")
        to send once across runs, or False to turn it off. (templated)
    :param graph_mail_conn_id: the Airflow connection to use.
    :param autoescape: HTML-escape every template variable in an HTML body (data with ``<`` or ``&``
        shows as text and cannot inject markup); mark trusted HTML with ``|safe``.
    :param render_timeout: seconds each templated field may take to render (default 60; the task's
        ``execution_timeout`` applies when shorter), so that an endless loop in a template fails the task.
    :param max_glob_matches: the most files one glob pattern in ``attachments`` may match (default 500).
    """

    def __init__(self, *, save_to_sent_items: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        check_options(save_to_sent_items=(save_to_sent_items, (bool,)))
        self.save_to_sent_items = save_to_sent_items

    def execute(self, context: Context) -> str:
        with fail_without_retries():
            message = self.build_message()
            key, check_first = self.idempotency(context)
            hook = self.get_hook()
            prepared = hook.client.prepare(message)
            status = hook.send_mail(prepared, sender=self.sender, save_to_sent_items=self.save_to_sent_items,
                                    idempotency_key=key, check_first=check_first)
        push_outcomes(context, [prepared.outcome(0, key, status, ref=hook.client.ref_for(key))])
        return status.value


class GraphDraftOperator(_GraphMessageOperator):
    """Create a draft for a person to review in Outlook; pushes its id and webLink to XCom.

    Takes the same fields as GraphSendMailOperator (recipients may be empty on a draft). A retried task
    replaces the draft its earlier try left instead of adding a second one.

    :param folder: the mail folder for the draft (default: Drafts). (templated)
    :return: ``{"id": ..., "web_link": ...}``, also pushed as XComs ``draft_id`` and ``web_link``.
    """

    template_fields: Sequence[str] = (*_GraphMessageOperator.template_fields, "folder")
    operator_extra_links = (OpenInOutlookLink(),)

    def __init__(self, *, folder: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.folder = folder

    def execute(self, context: Context) -> dict[str, str]:
        with fail_without_retries():
            key, check_first = self.idempotency(context)
            draft = self.get_hook().create_draft(self.build_message(), sender=self.sender, folder=self.folder,
                                                 idempotency_key=key, check_first=check_first)
        ti = context["ti"]
        ti.xcom_push(key=DRAFT_ID_KEY, value=draft["id"])
        ti.xcom_push(key=WEB_LINK_KEY, value=draft.get("webLink", ""))
        return {"id": draft["id"], "web_link": draft.get("webLink", "")}


class GraphSendDraftOperator(BaseOperator):
    """Send an existing draft by id, e.g. ``"{{ ti.xcom_pull('make_draft', key='draft_id') }}"``.

    Sent once: an unclear answer is checked on the draft itself, and a retried task skips a draft that
    is no longer one. Returns "sent" or "already_sent".

    :param message_id: the draft's id. (templated)
    :param sender: the mailbox holding the draft; defaults to the connection's ``sender``. (templated)
    :param graph_mail_conn_id: the Airflow connection to use.
    """

    template_fields: Sequence[str] = ("message_id", "sender")
    ui_color = "#cfe4f7"

    def __init__(self, *, message_id: str, sender: str | None = None,
                 graph_mail_conn_id: str = DEFAULT_CONN_ID, **kwargs) -> None:
        super().__init__(**kwargs)
        self.message_id = message_id
        self.sender = sender
        self.graph_mail_conn_id = graph_mail_conn_id

    def execute(self, context: Context) -> str:
        hook = GraphMailHook(graph_mail_conn_id=self.graph_mail_conn_id)
        with fail_without_retries():
            status = hook.send_draft(self.message_id, sender=self.sender, check_first=retried(context))
        self._push_outcome(context, hook, status)
        return status.value

    def _push_outcome(self, context: Context, hook: GraphMailHook, status: Status) -> None:
        """What went out, read back from Sent Items (the draft keeps its immutable id there), for
        GraphBounceReportOperator; the mail has gone either way, so a failed read only warns."""
        try:
            sent = sent_summary(hook.get_message(self.message_id, sender=self.sender, select=SELECT))
        except GraphMailError as err:
            self.log.warning("Sent draft %s, but could not read it back for a bounce report: %s", self.message_id,
                             err)
            return
        push_outcomes(context, [sent_outcome(sent, status)])
