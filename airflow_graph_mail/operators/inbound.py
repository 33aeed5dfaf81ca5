"""Operators for received mail: save its attachments, mark it done, answer it in its thread.

Each takes the mail as ``message_id`` and ``mailbox``; left out, they come from the run's conf, where
``run_once_per_mail`` (and a person triggering the handler by hand) puts them. Importing this module stays
cheap, like the other operators: the client, the mail readers and object storage load when a task runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import AirflowSkipException, BaseOperator

from airflow_graph_mail.airflow_face import (
    DEFAULT_CONN_ID,
    SAVED_KEY,
    check_options,
    fail_now,
    fail_without_retries,
    retried,
)
from airflow_graph_mail.errors import GraphConfigError, ItemNotFoundError
from airflow_graph_mail.hooks.graph_mail import GraphMailHook
from airflow_graph_mail.mail.attachments import MB
from airflow_graph_mail.mail.idempotency import make_key
from airflow_graph_mail.rendering import DEFAULT_RENDER_TIMEOUT, FieldRendering

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_graph_mail.graph.inbound import MailboxReader

_DONE_KEYS = ("move_to", "category", "mark_read")
_NO_MESSAGE = ("message_id: not given, and the run's conf has no 'message_id' (runs started by run_once_per_mail "
               "carry it); pass message_id (and mailbox), e.g. from GraphMailSensor's XCom message_ids")


def check_done(field: str, done) -> dict:
    """``mark_done``'s dict (``move_to``, ``category``, ``mark_read``), checked when the DAG is parsed."""
    if done is None:
        return {}
    if not isinstance(done, dict) or set(done) - set(_DONE_KEYS) or not done:
        raise GraphConfigError(f"{field}: expected a dict with some of {', '.join(_DONE_KEYS)}, got {done!r}")
    return done


def _categories(value) -> list[str]:
    categories = [value] if isinstance(value, str) else list(value or [])
    for category in categories:
        if not isinstance(category, str) or not category.strip() or len(category) > 255:
            raise GraphConfigError(f"category: {category!r} is not a category name")
    return categories


class _InboundOperator(BaseOperator):
    """The mail a task acts on and the connection, shared by the operators below."""

    ui_color = "#cfe4f7"

    def __init__(self, *, message_id: str | None = None, mailbox: str | None = None,
                 graph_mail_conn_id: str = DEFAULT_CONN_ID, **kwargs) -> None:
        super().__init__(**kwargs)
        check_options(graph_mail_conn_id=(graph_mail_conn_id, (str,)))
        self.message_id = message_id
        self.mailbox = mailbox
        self.graph_mail_conn_id = graph_mail_conn_id

    def message(self, context: Context) -> tuple[str, str | None]:
        """(message id, mailbox): the task's own, else the run's conf."""
        from airflow_graph_mail.graph.review import check_message_id

        conf = getattr(context.get("dag_run"), "conf", None) or {}
        message_id = self.message_id if self.message_id not in (None, "") else conf.get("message_id")
        if message_id in (None, ""):
            raise fail_now(_NO_MESSAGE)
        with fail_without_retries():
            check_message_id(message_id)
        mailbox = self.mailbox or (conf.get("mailbox") if self.message_id in (None, "") else None)
        return message_id, mailbox or None

    def reader(self, mailbox: str | None) -> MailboxReader:
        from airflow_graph_mail.graph.inbound import MailboxReader

        return MailboxReader(GraphMailHook(graph_mail_conn_id=self.graph_mail_conn_id).client, mailbox)

    def gone(self, reader: MailboxReader, message_id: str, err: ItemNotFoundError) -> AirflowSkipException:
        """A mail moved away or deleted meanwhile (a person, or another run): the task is skipped, saying so."""
        return AirflowSkipException(reader.describe_failure(err, message_id))


class GraphSaveAttachmentsOperator(_InboundOperator):
    """Save a received mail's attachments to a local folder or object storage, streamed (a 100 MB attachment
    never sits in memory); returns the paths written and pushes what each file is (XCom ``saved``: path,
    name, file name, content type, size, sha256).

    Names are made safe (one path component: no ``../``, no hidden or reserved names, unique within the
    mail) and are the same on every try. By default each mail gets its own folder under ``destination``
    (named by a hash of the mailbox and the mail's id), so a retry overwrites its own files only; with
    ``per_message_folder=False`` a file already there fails the task unless ``overwrite=True``.

    :param destination: a local folder, an fsspec URI (``s3://bucket/inbound``, ``file:///data/in``) or an
        ``ObjectStoragePath``. (templated)
    :param message_id: the mail (default: the run's conf). (templated)
    :param mailbox: its mailbox (default: the run's conf, else the connection's sender). (templated)
    :param name_pattern: a glob or a list of globs the attachment names must match, any case (``*.csv``).
        (templated)
    :param content_types: globs of content types to save (``["text/csv", "application/vnd.*"]``).
    :param include_inline: save inline images too (default False).
    :param include_items: save attached mails as ``.eml`` (contacts ``.vcf``, events ``.ics``); default True.
    :param max_attachments: the most attachments one mail may have to save (default 100).
    :param max_attachment_mb: the largest attachment accepted, in MB (default 150, Graph's own limit).
    :param max_total_mb: the most all saved attachments of one mail may add up to, in MB (default 1024).
    :param mark_done: after saving, e.g. ``{"move_to": "archive", "category": "Loaded", "mark_read": True}``.
    :param per_message_folder: put each mail's files in a folder of its own under ``destination``.
    :param overwrite: with ``per_message_folder=False``, replace files already there (default False).
    :param graph_mail_conn_id: the Airflow connection to use (Mail.Read; Mail.ReadWrite for ``mark_done``).
    """

    template_fields: Sequence[str] = ("message_id", "mailbox", "destination", "name_pattern")

    def __init__(self, *, destination, name_pattern: str | list[str] | None = None,
                 content_types: list[str] | None = None, include_inline: bool = False, include_items: bool = True,
                 max_attachments: int = 100, max_attachment_mb: float = 150, max_total_mb: float = 1024,
                 mark_done: dict | None = None, per_message_folder: bool = True, overwrite: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        check_options(content_types=(content_types, (list, tuple)), include_inline=(include_inline, (bool,)),
                      include_items=(include_items, (bool,)), max_attachments=(max_attachments, (int,)),
                      max_attachment_mb=(max_attachment_mb, (int, float)), max_total_mb=(max_total_mb, (int, float)),
                      per_message_folder=(per_message_folder, (bool,)), overwrite=(overwrite, (bool,)))
        self.destination = destination
        self.name_pattern = name_pattern
        self.content_types = list(content_types or [])
        self.include_inline, self.include_items = include_inline, include_items
        self.max_attachments, self.max_attachment_mb, self.max_total_mb = \
            max_attachments, max_attachment_mb, max_total_mb
        self.mark_done = check_done("mark_done", mark_done)
        self.per_message_folder, self.overwrite = per_message_folder, overwrite
        self._options()  # every limit checked now: a wrong one fails the DAG's import

    def _options(self):
        from airflow_graph_mail.graph.saving import SaveOptions

        patterns = [self.name_pattern] if isinstance(self.name_pattern, str) else list(self.name_pattern or [])
        return SaveOptions(name_patterns=tuple(patterns), content_types=tuple(self.content_types),
                           include_inline=self.include_inline, include_items=self.include_items,
                           max_attachments=self.max_attachments,
                           max_attachment_bytes=int(self.max_attachment_mb * MB),
                           max_total_bytes=int(self.max_total_mb * MB))

    def _folder(self, mailbox: str, message_id: str):
        """The destination as a path object: local, or object storage through Airflow's ObjectStoragePath."""
        from airflow_graph_mail.mail.inbound import mail_key

        target = self.destination
        if isinstance(target, str) and "://" in target:
            from airflow.providers.common.compat.sdk import ObjectStoragePath

            target = ObjectStoragePath(target)
        elif isinstance(target, (str, os.PathLike)) and not hasattr(target, "fs"):
            from pathlib import Path

            if not str(target).strip():
                raise GraphConfigError("destination: empty; give a folder, an fsspec URI or an ObjectStoragePath")
            target = Path(target).expanduser()
        elif not hasattr(target, "fs"):
            raise GraphConfigError(f"destination: cannot write to {type(target).__name__}; give a folder, an fsspec "
                                   "URI or an ObjectStoragePath")
        return target / f"mail-{mail_key(mailbox, message_id)}" if self.per_message_folder else target

    def execute(self, context: Context) -> list[str]:
        from airflow_graph_mail.graph.saving import save_attachments

        message_id, mailbox = self.message(context)
        with fail_without_retries():
            options = self._options()
            reader = self.reader(mailbox)
            try:
                saved = save_attachments(reader, message_id, self._folder(reader.mailbox, message_id), options,
                                         overwrite=self.overwrite or self.per_message_folder)
                if self.mark_done:
                    reader.mark_done(message_id, move_to=self.mark_done.get("move_to"),
                                     categories=_categories(self.mark_done.get("category")),
                                     read=bool(self.mark_done.get("mark_read")))
            except ItemNotFoundError as err:
                raise self.gone(reader, message_id, err) from err
        context["ti"].xcom_push(key=SAVED_KEY, value=[file.as_dict() for file in saved])
        self.log.info("Saved %d attachment(s) of message %s", len(saved), message_id)
        return [file.path for file in saved]


class GraphMarkMailOperator(_InboundOperator):
    """Mark a received mail done, as a person sees it in Outlook: add a category, mark it read, move it to a
    folder (in that order; each step is safe to repeat, and the mail keeps its immutable id when moved).
    Needs Mail.ReadWrite.

    :param message_id: the mail (default: the run's conf). (templated)
    :param mailbox: its mailbox (default: the run's conf, else the connection's sender). (templated)
    :param move_to: a folder's well-known name (``archive``, ``deleteditems``...) or id. (templated)
    :param category: a category name or a list of them, added to the mail's own. (templated)
    :param mark_read: mark the mail read.
    :param graph_mail_conn_id: the Airflow connection to use.
    """

    template_fields: Sequence[str] = ("message_id", "mailbox", "move_to", "category")

    def __init__(self, *, move_to: str | None = None, category: str | list[str] | None = None,
                 mark_read: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        check_options(move_to=(move_to, (str,)), category=(category, (str, list, tuple)),
                      mark_read=(mark_read, (bool,)))
        if not (move_to or category or mark_read):
            raise GraphConfigError("GraphMarkMailOperator: give move_to, category or mark_read")
        self.move_to, self.category, self.mark_read = move_to, category, mark_read

    def execute(self, context: Context) -> str:
        message_id, mailbox = self.message(context)
        with fail_without_retries():
            reader = self.reader(mailbox)
            try:
                return reader.mark_done(message_id, move_to=self.move_to or None,
                                        categories=_categories(self.category), read=self.mark_read)
            except ItemNotFoundError as err:
                raise self.gone(reader, message_id, err) from err


class GraphReplyOperator(FieldRendering, _InboundOperator):
    """Answer a received mail in its thread: reply, reply to all, or forward, with a templated body and
    attachments of any size; sent once (a retried task finds its reply by key instead of sending another).

    The body is rendered from this task's template and context (e.g. ``"received, {{ ti.xcom_pull('load') }}
    rows"``); what the mail itself says (its subject, sender, body) is never rendered as a template. Graph
    keeps the conversation, the RE:/FW: subject and the quoted original; the reply goes to the mail's
    Reply-To if it has one, else its sender. The connection's ``allowed_recipient_domains`` are checked on
    the final recipients. Needs Mail.ReadWrite (the draft) and Mail.Send.

    :param action: ``"reply"`` (default), ``"reply_all"`` or ``"forward"``.
    :param body: inline Jinja text, or a template file (.html, .htm, .txt, .j2). (templated)
    :param body_type: "html" or "text"; by default from the template file's extension, else html.
    :param to: forward recipients (forward only). (templated)
    :param attachments: what to attach, as GraphSendMailOperator takes it. (templated)
    :param message_id: the mail (default: the run's conf). (templated)
    :param mailbox: its mailbox (default: the run's conf, else the connection's sender). (templated)
    :param idempotency_key: by default the task instance; give your own, or False to turn it off. (templated)
    :param autoescape: HTML-escape every template variable of an HTML body.
    :param render_timeout: seconds the body may take to render (default 60).
    :param max_glob_matches: the most files one glob pattern in ``attachments`` may match (default 500).
    :param graph_mail_conn_id: the Airflow connection to use.
    """

    template_fields: Sequence[str] = ("message_id", "mailbox", "to", "body", "attachments", "idempotency_key")
    template_fields_renderers = {"body": "html", "attachments": "py"}

    def __init__(self, *, body: str, action: str = "reply", body_type: str | None = None,
                 to: str | list[str] | None = None, attachments: str | list | None = None,
                 idempotency_key: str | bool | None = None, autoescape: bool = False,
                 render_timeout: float | None = DEFAULT_RENDER_TIMEOUT, max_glob_matches: int = 500,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        from airflow_graph_mail.graph.reply import ACTIONS  # no HTTP: names only
        from airflow_graph_mail.operators.graph_mail import body_type_for

        check_options(action=(action, (str,)), body_type=(body_type, (str,)),
                      idempotency_key=(idempotency_key, (str, bool)), autoescape=(autoescape, (bool,)),
                      render_timeout=(render_timeout, (int, float)), max_glob_matches=(max_glob_matches, (int,)))
        if action not in ACTIONS:
            raise GraphConfigError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
        if (action == "forward") != bool(to):
            raise GraphConfigError("to: give recipients for action='forward', and only for it")
        self.body, self.action, self.to = body, action, to
        self.body_type = body_type or body_type_for(body) or "html"
        if self.body_type not in ("html", "text"):
            raise GraphConfigError(f"body_type: {body_type!r} is not 'html' or 'text'")
        self.attachments = [attachments] if isinstance(attachments, str) else (attachments or [])
        self.idempotency_key = idempotency_key
        self.autoescape, self.render_timeout, self.max_glob_matches = autoescape, render_timeout, max_glob_matches

    def execute(self, context: Context) -> str:
        from airflow_graph_mail.graph.reply import respond
        from airflow_graph_mail.mail.attachments import expand_sources
        from airflow_graph_mail.mail.recipients import parse_recipients

        message_id, mailbox = self.message(context)
        with fail_without_retries():
            to = parse_recipients(self.to, "to") if self.to else None
            attachments = expand_sources(self.attachments, max_glob_matches=self.max_glob_matches)
            key, check_first = self._idempotency(context)
            reader = self.reader(mailbox)
            try:
                status = respond(reader.client, message_id, action=self.action, body=str(self.body or ""),
                                 body_type=self.body_type, to=to, attachments=attachments, sender=reader.mailbox,
                                 idempotency_key=key, check_first=check_first)
            except ItemNotFoundError as err:
                raise self.gone(reader, message_id, err) from err
        self.log.info("%s: %s to message %s", status.value, self.action, message_id)
        return status.value

    def _idempotency(self, context: Context) -> tuple[str | None, bool]:
        """As the send operators: by default the task instance, looked up on a retry; a key of the user's own
        is always looked up; False turns keys off."""
        if self.idempotency_key is False:
            return None, False
        if isinstance(self.idempotency_key, str) and self.idempotency_key.strip():
            return self.idempotency_key.strip(), True
        ti = context["ti"]
        return make_key(ti.dag_id, ti.task_id, ti.run_id, ti.map_index, 0), retried(context)
