"""GraphMailMergeOperator: one template, one mail per row, sent concurrently within the mailbox's limits.

Importing this module stays cheap, like the other operators: the hook and the message model are
imported in ``execute``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_graph_mail.errors import RenderTimeoutError
from airflow_graph_mail.operators.graph_mail import OUTCOMES_KEY, _GraphMessageOperator
from airflow_graph_mail.operators.rendering import (
    content_env,
    is_template_file,
    render_seconds,
    template_source,
    time_limit,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

_ROW_LABEL = "rows[{position}].{field}"
_ROW_FIELDS = ("to", "cc", "bcc", "reply_to", "subject", "body", "attachments", "inline_images", "importance",
               "headers")


class GraphMailMergeOperator(_GraphMessageOperator):
    """Send one mail per row, each rendered from the same templates with ``row`` in the context.

    ``to="{{ row.email }}"``, ``subject="Statement for {{ row.name }}"``, ``body="statement.html"``: every
    message field (to, cc, bcc, reply_to, subject, body, attachments, inline_images, importance, headers)
    is rendered per row, with the task context (``ds``, ``params``...) too. All rows are rendered and
    checked before anything is sent; the rendered mails are not kept (each is rendered again as it is
    sent), so memory does not grow with the number of rows. ``check_only=True`` stops after the check.

    Messages go out concurrently, at most ``concurrency`` requests at a time (Graph allows 4 per mailbox),
    slowing down when Graph throttles. Each row's outcome is pushed to XCom (key ``outcomes``). If any
    row fails, the task fails naming them; its retry sends only the rows that did not go out.

    :param rows: the rows: a list of dicts (or an upstream task's output, e.g. ``load.output``), or a
        .csv, .json or .jsonl file path or fsspec URI. Keep them in the same order across retries, or set
        ``key_field``. (templated)
    :param key_field: a row column that identifies the mail (e.g. "email"); by default the row's position.
    :param concurrency: concurrent requests to the mailbox, 1 to 4.
    :param save_to_sent_items: keep copies in Sent Items (needed to recognise rows already sent).
    :param idempotency_key: a base for every row's key (e.g. "statements-{{ ds }}") to send once across
        runs; by default the task instance; False turns keys off. (templated)
    :param check_only: render and check every row, send nothing (a dry run of a large merge).
    :param render_timeout: seconds one row may take to render, all its fields together.
    :return: counts per status, e.g. ``{"sent": 98, "already_sent": 2}``; with ``check_only``,
        ``{"checked": 100000}``.
    """

    template_fields: Sequence[str] = ("rows", "sender", "idempotency_key")
    template_fields_renderers = {"rows": "json"}
    data_fields = ("rows",)  # row values are data: never rendered as templates

    def __init__(self, *, rows: Any, key_field: str | None = None, concurrency: int = 4,
                 save_to_sent_items: bool = True, check_only: bool = False, **kwargs) -> None:
        from airflow_graph_mail.operators.graph_mail import check_options

        super().__init__(**kwargs)
        check_options(key_field=(key_field, (str,)), concurrency=(concurrency, (int,)),
                      save_to_sent_items=(save_to_sent_items, (bool,)), check_only=(check_only, (bool,)))
        if not 1 <= concurrency <= 4:
            from airflow_graph_mail.errors import GraphConfigError

            raise GraphConfigError(f"concurrency: {concurrency!r}; Graph allows 1 to 4 concurrent requests per "
                                   "mailbox")
        self.rows = rows
        self.key_field = key_field
        self.concurrency = concurrency
        self.save_to_sent_items = save_to_sent_items
        self.check_only = check_only

    def execute(self, context: Context) -> dict[str, int]:
        from airflow_graph_mail.operators.failures import retries_only_when_useful

        with retries_only_when_useful():
            return self._merge(context)

    def _merge(self, context: Context) -> dict[str, int]:
        import time

        from airflow_graph_mail.errors import BatchFailedError, MessageValidationError
        from airflow_graph_mail.graph.bulk import check_all
        from airflow_graph_mail.mail.attachments import cid
        from airflow_graph_mail.mail.rows import load_rows
        from airflow_graph_mail.outcomes import Status

        rows = load_rows(self.rows)
        env = self.get_template_env()
        env.globals.setdefault("cid", cid)
        messages = RowMessages(self, rows, self._compile(env), context,
                               render_seconds(self.render_timeout, self.execution_timeout))
        keys, check_first = [], False
        for position, row in enumerate(rows):
            ident = position if self.key_field is None else _key_value(row, self.key_field, position)
            key, check_first = self.idempotency(context, ident)
            keys.append(key)
        duplicates = sorted(k for k, n in Counter(keys).items() if k is not None and n > 1)
        if self.key_field and duplicates:
            raise MessageValidationError(f"rows.{self.key_field}", f"the same value in several rows "
                                         f"({', '.join(duplicates[:3])}); key_field must identify each row")
        hook = self.get_hook()
        started = time.monotonic()
        check_all(hook.client, messages, label=_ROW_LABEL)
        self.log.info("Checked %d row(s) in %.1f s", len(rows), time.monotonic() - started)
        if self.check_only:
            return {"checked": len(rows)}
        if not rows:
            self.log.info("No rows: nothing to send")
            return {}
        outcomes = hook.send_many(messages, keys=keys, sender=self.sender, check_first=check_first,
                                  save_to_sent_items=self.save_to_sent_items, concurrency=self.concurrency,
                                  label=_ROW_LABEL)
        context["ti"].xcom_push(key=OUTCOMES_KEY, value=outcomes)
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
        failed = [o for o in outcomes if o["status"] in (Status.FAILED, Status.UNKNOWN)]
        if failed:
            raise BatchFailedError(failed, len(outcomes))
        return counts

    def _compile(self, env) -> dict[str, Any]:
        """Each row field's templates, compiled once for all rows (the body's file read once)."""
        from jinja2 import TemplateError

        from airflow_graph_mail.errors import MessageValidationError

        templates = {}
        for name in _ROW_FIELDS:
            value = getattr(self, name)
            try:
                if name == "body" and is_template_file(value):
                    value = template_source(env, value)
                templates[name] = _compiled(value, self.body_env(env) if name == "body" else content_env(name, env))
            except TemplateError as err:
                raise MessageValidationError(name, f"{type(err).__name__}: {err}") from None
        return templates


class RowMessages(Sequence):
    """The merge's messages as a sequence: row ``i`` is rendered when ``messages[i]`` is asked for, under one
    time limit for all its fields. A bad field raises MessageValidationError naming the field (the caller's
    label adds the row); a timeout names both (``rows[12].subject``)."""

    def __init__(self, operator: GraphMailMergeOperator, rows: list[dict], templates: dict, context: Context,
                 limit: float | None):
        self.operator, self.rows, self.templates, self.context, self.limit = operator, rows, templates, context, limit

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, position):  # a Sequence's index (slices are not asked for)
        from jinja2 import TemplateError

        from airflow_graph_mail.errors import MessageValidationError
        from airflow_graph_mail.mail.message import Message

        row_context = {**self.context, "row": self.rows[position]}
        fields: dict[str, Any] = {}
        current = ""
        try:
            with time_limit(self.limit, lambda: current):
                for current, template in self.templates.items():
                    fields[current] = _rendered(template, row_context)
        except TemplateError as err:
            raise MessageValidationError(current, f"{type(err).__name__}: {err}") from None
        except RenderTimeoutError as err:
            raise RenderTimeoutError(_ROW_LABEL.format(position=position, field=err.field), err.seconds) from None
        return Message(body_type=self.operator.body_type, max_glob_matches=self.operator.max_glob_matches, **fields)


def _compiled(value, env):
    """Strings -> compiled templates, inside lists and dicts too; other values kept."""
    if isinstance(value, str):
        return env.from_string(value)
    if isinstance(value, (list, tuple)):
        return [_compiled(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _compiled(v, env) for k, v in value.items()}
    return value


def _rendered(value, context: dict):
    from jinja2 import Template

    if isinstance(value, Template):
        return value.render(context)
    if isinstance(value, list):
        return [_rendered(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _rendered(v, context) for k, v in value.items()}
    return value


def _key_value(row: dict, key_field: str, position: int) -> str:
    from airflow_graph_mail.errors import MessageValidationError

    value = row.get(key_field)
    if value in (None, ""):
        raise MessageValidationError(f"rows[{position}].{key_field}", "empty, but key_field names it; every row "
                                     "needs a value there (or drop key_field to key rows by position)")
    return str(value)
