"""GraphMailMergeOperator: one template, one mail per row, sent concurrently within the mailbox's limits.

Importing this module stays cheap, like the other operators: the message model is imported when a row is
built, the client when the hook connects.
"""

from __future__ import annotations

import functools
import glob
import math
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jinja2 import Template, pass_eval_context

from airflow_graph_mail.airflow_face import OUTCOMES_KEY, check_options, fail_now, fail_without_retries, push_outcomes
from airflow_graph_mail.errors import BatchFailedError, GraphConfigError, MessageValidationError, RenderTimeoutError
from airflow_graph_mail.mail.rows import load_rows
from airflow_graph_mail.operators.graph_mail import _GraphMessageOperator
from airflow_graph_mail.outcomes import Outcome, Status
from airflow_graph_mail.rendering import render_seconds, rendering

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

_ROW_LABEL = "rows[{position}].{field}"
_ROW_FIELDS = ("to", "cc", "bcc", "reply_to", "subject", "body", "attachments", "inline_images", "importance",
               "headers")
_RECIPIENT_FIELDS = ("to", "cc", "bcc", "reply_to")
_SOURCE_FIELDS = ("attachments", "inline_images")
# A value in a recipient field, while the template's own text is read: its number among the entry's values,
# between two private-use characters. Nothing in a value can reach the text that is parsed for addresses.
_SLOT = re.compile("\ue000([0-9]+)\ue001")
_MARKS = re.compile("[\ue000\ue001]")


class GraphMailMergeOperator(_GraphMessageOperator):
    """Send one mail per row, each rendered from the same templates with ``row`` in the context.

    ``to="{{ row.email }}"``, ``subject="Statement for {{ row.name }}"``, ``body="statement.html"``: every
    message field (to, cc, bcc, reply_to, subject, body, attachments, inline_images, importance, headers)
    is rendered per row, with the task context (``ds``, ``params``...) too. All rows are rendered and
    checked before anything is sent; the rendered mails are not kept (each is rendered again as it is
    sent), so memory does not grow with the number of rows. ``check_only=True`` stops after the check.

    Row values are data: they never add a recipient or a header. In to, cc, bcc and reply_to the
    template's own text gives the addresses, and each ``{{ ... }}`` fills one address or one display
    name: with ``to="{{ row.name }} <{{ row.email }}>"`` a name ``Dora <eve@x.com>, Dora`` is one display
    name, and an email ``gus@x.com>, <eve@x.com`` is an invalid address (the row's error), never a second
    recipient. A list value (JSON rows, XCom) gives one address per entry, the way to give several;
    ``"a@x.com, b@x.com"`` in one value is one (invalid) address.

    Messages go out concurrently, at most ``concurrency`` requests at a time (Graph allows 4 per mailbox),
    slowing down when Graph throttles. Each row's outcome is pushed to XCom (key ``outcomes``), with when it
    was accepted and when it leaves the Outbox (Exchange lets 30 a minute go). If any row fails, the task fails
    naming them; its retry sends only the rows that did not go out.

    Before the first send the merge is planned against the mailbox's sending limits (Exchange Online: 10,000
    recipients per 24 hours, To, Cc and Bcc each counting): the recipients of every row, those the mailbox sent
    in the last 24 hours (read from Sent Items by the server's clock) and those still waiting in its Outbox.
    When the rows do not fit, the task fails before sending anything, naming the numbers (``over_limit="fail"``);
    with ``over_limit="defer"`` it sends the rows that fit, waits in the triggerer (no worker slot held) until
    the window has room, and goes on where it stopped, as many windows as it takes, each row sent once.

    :param rows: the rows: a list of dicts (or an upstream task's output, e.g. ``load.output``), or a
        .csv, .json or .jsonl file path or fsspec URI. Keep them in the same order across retries, or set
        ``key_field``. (templated)
    :param key_field: a row column that identifies the mail (e.g. "email"); by default the row's position.
        Values are compared as Exchange compares addresses, without regard to case or surrounding spaces:
        ``Fay@Example.com`` and ``fay@example.com`` are one recipient, so two such rows are refused (naming
        both) rather than sending her two mails. Keys are used as given, so keys of earlier runs still match.
    :param concurrency: concurrent requests to the mailbox, 1 to 4.
    :param save_to_sent_items: keep copies in Sent Items (needed to recognise rows already sent).
    :param idempotency_key: a base for every row's key (e.g. "statements-{{ ds }}") to send once across
        runs; by default the task instance; False turns keys off. (templated)
    :param check_only: render and check every row, and plan them against the mailbox; send nothing (a dry
        run of a large merge).
    :param over_limit: when the rows do not fit the mailbox's 24-hour window: "fail" (before sending anything)
        or "defer" (send what fits, wait for the window, go on).
    :param poke_interval: seconds between looks at the mailbox while a deferred merge waits.
    :param render_timeout: seconds one row may take to render, all its fields together.
    :return: counts per status, e.g. ``{"sent": 98, "already_sent": 2}``; with ``check_only``,
        ``{"checked": 100000, "plan": {...}}`` (the plan's numbers and its ``text``).
    """

    template_fields: Sequence[str] = ("rows", "sender", "idempotency_key")
    template_fields_renderers = {"rows": "json"}
    data_fields = ("rows",)  # row values are data: never rendered as templates

    def __init__(self, *, rows: Any, key_field: str | None = None, concurrency: int = 4,
                 save_to_sent_items: bool = True, check_only: bool = False, over_limit: str = "fail",
                 poke_interval: float = 300.0, **kwargs) -> None:
        super().__init__(**kwargs)
        check_options(key_field=(key_field, (str,)), concurrency=(concurrency, (int,)),
                      save_to_sent_items=(save_to_sent_items, (bool,)), check_only=(check_only, (bool,)),
                      over_limit=(over_limit, (str,)), poke_interval=(poke_interval, (int, float)))
        if not 1 <= concurrency <= 4:
            raise GraphConfigError(f"concurrency: {concurrency!r}; Graph allows 1 to 4 concurrent requests per "
                                   "mailbox")
        if over_limit not in ("fail", "defer"):
            raise GraphConfigError(f"over_limit: {over_limit!r}; use 'fail' (rows over the mailbox's 24-hour window "
                                   "fail the task before anything is sent) or 'defer' (send what fits, wait in the "
                                   "triggerer until the window has room, go on)")
        if not (math.isfinite(poke_interval) and poke_interval >= 1):
            raise GraphConfigError(f"poke_interval: {poke_interval!r}; give the seconds between looks at the mailbox "
                                   "while a deferred merge waits (1 or more)")
        self.over_limit = over_limit
        self.poke_interval = float(poke_interval)
        self.rows = rows
        self.key_field = key_field
        self.concurrency = concurrency
        self.save_to_sent_items = save_to_sent_items
        self.check_only = check_only

    def execute(self, context: Context) -> dict[str, Any]:
        with fail_without_retries():
            return self._merge(context, start=0)

    def resume(self, context: Context, event: dict | None = None, start: int | None = None) -> dict[str, Any]:
        """Back from the triggerer: the window has room; go on from row ``start`` (the event carries it too)."""
        event = event or {}
        start = start if start is not None else int(event.get("position", 0))
        if event.get("status") != "room":
            text = f"waiting for room in the mailbox's 24-hour window ended with {event.get('status')!r}: " \
                   f"{event.get('error', '')}"
            if event.get("permanent"):
                raise fail_now(text)
            raise GraphConfigError(text) if event.get("status") == "timeout" else RuntimeError(text)
        self.log.info("The mailbox's window has room again (server time %s); going on from row %d",
                      event.get("server_time"), start)
        with fail_without_retries():
            return self._merge(context, start=start)

    def _merge(self, context: Context, start: int) -> dict[str, Any]:
        rows = load_rows(self.rows)
        env = self.get_template_env()
        messages = RowMessages(self, rows, self._compile(env), context,
                               render_seconds(self.render_timeout, self.execution_timeout))
        keys, check_first = [], False
        firsts: dict[str, int] = {}  # a key as compared -> the first row holding it
        for position, row in enumerate(rows):
            ident: int | str = position
            if self.key_field is not None:
                ident = _key_value(row, self.key_field, position)
                first = firsts.setdefault(ident.strip().casefold(), position)
                if first != position:
                    raise MessageValidationError(
                        f"rows[{position}].{self.key_field}", f"{ident!r} is also the key of rows[{first}] "
                        f"({_key_value(rows[first], self.key_field, first)!r}); key_field must identify each row, "
                        "compared as Exchange compares addresses (without regard to case or surrounding spaces): "
                        "remove or merge one of the two rows")
            key, check_first = self.idempotency(context, ident)
            keys.append(key)
        hook = self.get_hook()
        if self.check_only:
            from airflow_graph_mail.graph.bulk import check_all, plan_batch  # the client's stack, loaded already

            plan = plan_batch(hook.client, check_all(hook.client, messages, label=_ROW_LABEL), self.sender)
            self.log.info("check_only: %d row(s) checked, nothing sent. %s", len(rows), plan.describe())
            return {"checked": len(rows), "plan": plan.as_dict()}
        if not rows:
            self.log.info("No rows: nothing to send")
            return {}
        earlier = [Outcome.from_dict(o) for o in (context["ti"].xcom_pull(task_ids=self.task_id, key=OUTCOMES_KEY)
                                                  or [])[:start]] if start else []
        # send_many renders and checks every row before sending any, then renders each again as it sends it
        outcomes = earlier + hook.send_outcomes(
            _From(messages, start), keys=keys[start:], sender=self.sender, check_first=check_first,
            save_to_sent_items=self.save_to_sent_items, concurrency=self.concurrency, label=_ROW_LABEL,
            over_limit=self.over_limit, first_position=start)
        push_outcomes(context, outcomes)
        waiting = [o for o in outcomes if o.status is Status.DEFERRED]
        if waiting:
            self._wait_for_room(waiting[0], len(waiting))
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
        failed = [o for o in outcomes if o.status in (Status.FAILED, Status.UNKNOWN)]
        if failed:
            raise BatchFailedError(failed, len(outcomes))
        return counts

    def _wait_for_room(self, first: Outcome, waiting: int) -> None:
        """Defer until the mailbox's window has room for the first row that waits, then ``resume`` there."""
        from airflow_graph_mail.graph.planning import epoch
        from airflow_graph_mail.triggers.mailbox import GraphSendingRoomTrigger

        self.log.info("%d row(s) wait for the mailbox's 24-hour window to free, from row %d (planned to leave about "
                      "%s); waiting in the triggerer", waiting, first.position, first.leaves_at)
        recipients = len({a.lower() for a in (*first.to, *first.cc, *first.bcc)})
        trigger = GraphSendingRoomTrigger(graph_mail_conn_id=self.graph_mail_conn_id, sender=self.sender,
                                          recipients=recipients, poke_interval=self.poke_interval,
                                          not_before=epoch(first.leaves_at) if first.leaves_at else None,
                                          position=first.position)
        self.defer(trigger=trigger, method_name="resume", kwargs={"start": first.position})

    def _compile(self, env) -> dict[str, Any]:
        """Each row field's templates, compiled once for all rows (the body's file read once)."""
        renderer = self.renderer(env)
        templates = {}
        for name in _ROW_FIELDS:
            value = getattr(self, name)
            with renderer.rendering(name):
                value = renderer.source(name, value)
                if name in _RECIPIENT_FIELDS and isinstance(value, (str, list, tuple)):
                    templates[name] = RecipientTemplates(value, env, name)
                elif name in _SOURCE_FIELDS:
                    templates[name] = _compiled_sources(value, renderer.env_for(name), _literal_paths(env, name))
                else:
                    templates[name] = _compiled(value, renderer.env_for(name))
        return templates


class _From(Sequence):
    """The messages from position ``start`` on (a merge resumed after waiting for the window)."""

    def __init__(self, messages: Sequence, start: int):
        self.messages, self.start = messages, start

    def __len__(self) -> int:
        return len(self.messages) - self.start

    def __getitem__(self, position):  # a Sequence's index (slices are not asked for)
        return self.messages[self.start + position]


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
        from airflow_graph_mail.mail.message import Message  # the message model, loaded when a row is built

        row_context = {**self.context, "row": self.rows[position]}
        fields: dict[str, Any] = {}
        current = ""
        try:
            with rendering(lambda: current, self.limit, label=_ROW_LABEL.replace("{position}", str(position))):
                for current, template in self.templates.items():
                    fields[current] = _rendered(template, row_context, current)
        except RenderTimeoutError as err:
            raise RenderTimeoutError(_ROW_LABEL.format(position=position, field=err.field), err.seconds) from None
        return Message(body_type=self.operator.body_type, max_glob_matches=self.operator.max_glob_matches, **fields)


class RecipientTemplates:
    """A recipient field of the merge (a string, or a list of strings and Graph recipient dicts), compiled
    so that each ``{{ ... }}`` fills one slot of the address grammar: its text is split into addresses and
    display names first, then the values fill them in. A row value is one address or one display name (a
    list value: one address per entry), whatever punctuation it holds."""

    def __init__(self, value: str | list | tuple, env, field: str):
        previous = env.finalize

        @pass_eval_context  # so Jinja never calls it while compiling: a slot's number exists only in a render
        def slot(eval_context, value):
            return _slot(previous(value) if previous else value)

        slots = env.overlay(finalize=slot)
        self.listed = not isinstance(value, str)
        self.entries = [self._entry(entry, slots, field) if isinstance(entry, str) else _compiled(entry, env)
                        for entry in ([value] if isinstance(value, str) else value)]

    @staticmethod
    def _entry(text: str, slots, field: str) -> Template | str:
        """The entry's template; its text as rendered when it has no template syntax (no values to fill)."""
        if _MARKS.search(text):
            raise _own_marks(field)
        return _template(text, slots, render=_text)

    def render(self, context: dict, field: str) -> list:
        """Recipient objects (and Graph dicts as rendered), for Message to check."""
        found: list = []
        for position, entry in enumerate(self.entries):
            if isinstance(entry, Template):
                _FILLING.values = []
                try:
                    filled = _filled(field, _text(entry, context), _FILLING.values)
                finally:
                    _FILLING.values = None  # no row's values kept in the thread
            elif isinstance(entry, str):  # no {{ ... }} in it: the same addresses for every row
                filled = _filled(field, entry, [])
            else:
                found.append(_rendered(entry, context, field))
                continue
            if self.listed and not filled:
                raise MessageValidationError(f"{field}[{position}]", "empty address: remove the entry or fill it in")
            found.extend(filled)
        return found


# The values of the recipient entry this thread is rendering, in the order its slots name them.
_FILLING = threading.local()


def _text(template: Template, context: dict | None = None) -> str:
    """generate(), not render(): a native DAG's render() would read the text as a Python literal."""
    return "".join(str(piece) for piece in template.generate(context or {}))


def _own_marks(field: str) -> MessageValidationError:
    return MessageValidationError(field, "the template's text holds U+E000 or U+E001, the private-use characters "
                                  "the merge marks row values with: remove them")


def _slot(value) -> str:
    """The recipient fields' ``finalize``: a value (a list: its entries) set aside, its slot's number left in
    the text. The text is then the same for every row, so its addresses are read once per distinct text
    (``_shape``)."""
    values = _FILLING.values
    values.append([str(v) for v in value] if isinstance(value, (list, tuple)) else str(value))
    return f"\ue000{len(values) - 1}\ue001"


def _fill(text: str, values: list) -> str:
    """Text with its slots filled (a list value's entries joined, as in a display name)."""
    def value(slot: re.Match) -> str:
        found = values[int(slot[1])]
        return ", ".join(found) if isinstance(found, list) else found

    return (_SLOT.sub(value, text) if "\ue000" in text else text).strip()


@functools.lru_cache(maxsize=256)
def _shape(text: str) -> tuple:
    """A template text's addresses and display names, slots unfilled (read once per distinct text)."""
    from airflow_graph_mail.mail.recipients import parse_shape  # with the message model

    return tuple(parse_shape(text))


def _filled(field: str, text: str, values: list) -> list:
    """The addresses the template's text gives, each slot filled with its value."""
    from airflow_graph_mail.mail.recipients import Recipient, is_valid_address  # with the message model

    if any(int(number) >= len(values) for number in _SLOT.findall(text)):  # marks of its own, e.g. included
        raise _own_marks(field)
    try:
        shapes = _shape(text)
    except ValueError:
        raise MessageValidationError(field, "unbalanced quote in the template's text: close the display name's "
                                     "quotes") from None
    found: list[Recipient] = []
    for shape in shapes:
        whole = _SLOT.fullmatch(shape.address)
        value = values[int(whole[1])] if whole and not shape.name else None
        if isinstance(value, list):  # a list value alone: one address per entry
            found.extend(Recipient(entry.strip()) for entry in value)
            continue
        recipient = Recipient(_fill(shape.address, values), _fill(shape.name, values))
        if recipient.address or recipient.name:  # an empty value (no cc for this row) gives no recipient
            found.append(recipient)
    for recipient in found:
        if re.search(r"[,;<>]", recipient.address) and not is_valid_address(recipient.address):
            raise MessageValidationError(field, f"{recipient.address!r} is not a valid e-mail address: each "
                                         "{{ ... }} fills one address or one display name; give several addresses "
                                         "as a list")
    return found


def _literal_paths(env, field: str):
    """The environment for attachment paths: a row value in a path names one file, in the folder the
    template's text gives. Glob characters in it match themselves, and it cannot walk up ('..')."""
    def literal(value) -> str:
        text = str(value)
        if ".." in re.split(r"[/\\]", text):
            raise MessageValidationError(field, f"{text!r} cannot name a parent folder ('..'): a row value in an "
                                         "attachment path names a file in the folder the template gives")
        return glob.escape(text)

    previous = env.finalize
    return env.overlay(finalize=(lambda v: literal(previous(v))) if previous else literal)


def _compiled_sources(value, env, path_env):
    """Attachment sources (a field's value: one source, a list of them, or inline images' {content id:
    source}): a path or URI -- a string, or a dict's path or uri -- takes row values literally; names
    and contents are rendered as they are."""
    def source(item):
        if isinstance(item, str):
            return _template(item, path_env)
        if isinstance(item, dict):
            return {k: _template(v, path_env) if k in ("path", "uri") and isinstance(v, str) else _compiled(v, env)
                    for k, v in item.items()}
        return _compiled(item, env)  # a (name, content) pair, or anything Message will refuse

    if isinstance(value, (list, tuple)) and not (len(value) == 2 and isinstance(value[0], str)
                                                 and not isinstance(value[1], str)):
        return [source(item) for item in value]
    if isinstance(value, dict) and not {"path", "uri", "content", "content_base64"} & set(value):
        return {content_id: source(item) for content_id, item in value.items()}  # inline images
    return source(value)


def _template(text: str, env, render=Template.render):
    """A compiled template; a text with no template syntax in it is rendered once, here, and its result kept
    (the same for every row, as Jinja would render it: newlines, a native DAG's literals)."""
    template = env.from_string(text)
    return template if _has_syntax(text, env) else render(template)


def _has_syntax(text: str, env) -> bool:
    """Whether a text holds anything Jinja would run (else it renders the same for every row)."""
    return any(mark and mark in text for mark in (env.block_start_string, env.variable_start_string,
                                                  env.comment_start_string, env.line_statement_prefix,
                                                  env.line_comment_prefix))


def _compiled(value, env):
    """Strings -> compiled templates, inside lists and dicts too; other values kept."""
    if isinstance(value, str):
        return _template(value, env)
    if isinstance(value, (list, tuple)):
        return [_compiled(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _compiled(v, env) for k, v in value.items()}
    return value


def _rendered(value, context: dict, field: str):
    if isinstance(value, RecipientTemplates):
        return value.render(context, field)
    if isinstance(value, Template):
        return value.render(context)
    if isinstance(value, list):
        return [_rendered(v, context, field) for v in value]
    if isinstance(value, dict):
        return {k: _rendered(v, context, field) for k, v in value.items()}
    return value


def _key_value(row: dict, key_field: str, position: int) -> str:
    value = row.get(key_field)
    if value in (None, ""):
        raise MessageValidationError(f"rows[{position}].{key_field}", "empty, but key_field names it; every row "
                                     "needs a value there (or drop key_field to key rows by position)")
    return str(value)
