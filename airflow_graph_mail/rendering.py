"""The one renderer of this provider's templated fields: the send and draft operators (mapped tasks too),
the mail merge's rows and GraphMailNotifier all render through ``Renderer``.

What differs from Airflow's default, and why:
- Only the body may name a template file (``report.html``); ``attachments=["out/summary.txt"]`` is a
  path to attach. So the operators' ``template_ext`` is empty, and the body's file is read here from the
  task's template search path.
- With ``autoescape=True`` an HTML body escapes every variable; the other fields never do (a subject
  is text, not HTML).
- Attachment content keeps its last newline (Airflow's environment drops it: a CSV's final line break
  would be lost).
- Each field (a merge: each row) renders within a time limit (the operator's ``render_timeout``, or the
  task's ``execution_timeout`` if shorter): Airflow renders before the execution timeout starts, so an
  endless loop in a template would otherwise hold a worker forever. The error names the field.
- A template that raises from its own code (``{{ 1 / 0 }}``, endless recursion, a filter given the wrong
  type) fails at once like a template error, as ``<field>: <ErrorType>: <message>``; an error from
  outside (an XCom or a Variable out of reach) keeps its own type (and the task its retries), its field
  logged.
- ``cid('chart.png')`` is available in every template.

The hook: Airflow renders a task through ``render_template_fields``, but a mapped task (``.expand()``)
is rendered by calling ``_do_render_template_fields`` on the unmapped operator directly (Airflow's own
comment there invites operators to override it). Overriding the public method alone would leave mapped
tasks with the default rendering, so ``FieldRendering`` overrides that one private method, and nothing
else; ``tests/test_rendering.py`` checks its signature and that Airflow calls it, on every supported
version. Everything inside uses public API: ``render_template`` and ``get_template_env``.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError, TemplateNotFound

from airflow_graph_mail.airflow_face import fail_now
from airflow_graph_mail.errors import MessageValidationError, RenderTimeoutError

log = logging.getLogger(__name__)

BODY_TEMPLATE_EXT = (".html", ".htm", ".txt", ".j2")
# Fields that carry file content (``("report.csv", "a,b\n{{ ... }}\n")``).
CONTENT_FIELDS = ("attachments", "inline_images")
# Seconds a field may take to render when the task sets no shorter execution_timeout.
DEFAULT_RENDER_TIMEOUT = 60.0
# What a template's own code raises: the same on every try (with TemplateError and RenderTimeoutError).
TEMPLATE_FAULTS = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError,
                   AssertionError)


def is_template_file(value, extensions: tuple[str, ...] = BODY_TEMPLATE_EXT) -> bool:
    return isinstance(value, str) and value.lower().endswith(extensions) and "\n" not in value


@contextmanager
def time_limit(seconds: float | None, field):
    """Raise RenderTimeoutError(field) in this thread when the block runs longer than ``seconds``; ``field``
    may be a callable naming the field being rendered when time runs out (one alarm for several fields).

    Uses SIGALRM, as Airflow's execution_timeout does; an alarm already set (an execution_timeout while
    ``execute`` runs) is kept and restored, and wins when it is due first. Outside the main thread, or
    where there is no SIGALRM, the block runs without a limit."""
    if not seconds or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending, interval = signal.getitimer(signal.ITIMER_REAL)
    if pending and pending <= seconds:  # the outer limit comes first: leave it in charge
        yield
        return

    def expired(signum, frame):
        raise RenderTimeoutError(field() if callable(field) else field, seconds)

    previous = signal.signal(signal.SIGALRM, expired)
    started = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if pending:
            signal.setitimer(signal.ITIMER_REAL, max(pending - (time.monotonic() - started), 0.001), interval)


def is_template_fault(err: BaseException) -> bool:
    """A template that does not parse, names what is not there, never ends, or raises from its own code
    (``{{ 1 / 0 }}``, endless recursion, a filter given the wrong type) fails the same way on every try.
    Other errors (a connection, an XCom or a Variable out of reach) may pass, and keep the task's retries."""
    return isinstance(err, (TemplateError, RenderTimeoutError, *TEMPLATE_FAULTS))


def render_problem(err: BaseException) -> str:
    """``<ErrorType>: <message>``, the way every render error is told (after the field it came from). An
    endless recursion's traceback (a thousand template frames) is dropped: the field and message say it."""
    if isinstance(err, RecursionError):
        err.with_traceback(None)
    return f"{type(err).__name__}: {err}"


def render_seconds(render_timeout, execution_timeout=None) -> float | None:
    """The shorter of the operator's render_timeout and the task's execution_timeout, in seconds."""
    limits = [seconds for seconds in (_seconds(render_timeout), _seconds(execution_timeout)) if seconds]
    return min(limits) if limits else None


def _seconds(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


class Renderer:
    """Renders fields from one Jinja environment (the task's or the DAG's): which environment each field
    gets, the body's template file, the time limit, and what a failure says.

    :param seconds: the time limit (``render_seconds``), per ``rendering`` block.
    :param autoescape: escape every variable of the body (an HTML body, with the operator's autoescape).
    :param body_files: the extensions by which the body names a template file.
    :param label: how a log line names a field whose rendering failed from outside, ``{field}`` filled in.
    """

    def __init__(self, jinja_env, *, seconds: float | None, body_field: str = "body", autoescape: bool = False,
                 body_files: tuple[str, ...] = BODY_TEMPLATE_EXT, label: str = "field {field!r}"):
        from airflow_graph_mail.mail.attachments import cid  # the message model: not paid by DAG parsing

        jinja_env.globals.setdefault("cid", cid)  # <img src="{{ cid('chart.png') }}">
        self.env, self.seconds, self.body_field, self.body_files, self.label = \
            jinja_env, seconds, body_field, body_files, label
        self._body_env = jinja_env.overlay(autoescape=True) if autoescape else jinja_env
        self._content_env = None

    def env_for(self, field: str):
        """The body's environment (autoescaping, when asked), attachment content's (keeping its last
        newline), or the task's own."""
        if field == self.body_field:
            return self._body_env
        if field in CONTENT_FIELDS:
            if self._content_env is None:
                env = self.env.overlay()  # overlay(keep_trailing_newline=...) needs Jinja 3.1.3; this works on all
                env.keep_trailing_newline = True
                self._content_env = env
            return self._content_env
        return self.env

    def source(self, field: str, value):
        """The template to render: the body file's text when the body names one, else the value itself."""
        if field == self.body_field and is_template_file(value, self.body_files):
            if self.env.loader is None:
                raise TemplateNotFound(value)
            return self.env.loader.get_source(self.env, value)[0]
        return value

    def rendering(self, field: str):
        """``rendering(field)`` with this renderer's time limit and label."""
        return rendering(field, self.seconds, label=self.label)


@contextmanager
def rendering(field: str | Callable[[], str], seconds: float | None, *, label: str = "field {field!r}",
              ) -> Iterator[None]:
    """Render inside: within ``seconds``, a template's fault raised as MessageValidationError(field,
    "<ErrorType>: <message>") with the template's exception as its cause; a timeout (RenderTimeoutError) and
    our own checks name the field already; anything else is logged naming the field (through ``label``) and
    raised as it is. ``field`` may be a callable naming the field being rendered (one limit for several)."""
    try:
        with time_limit(seconds, field):
            yield
    except (RenderTimeoutError, MessageValidationError):
        raise
    except Exception as err:  # the stack is unwound here, even after an endless recursion
        name = field() if callable(field) else field
        if is_template_fault(err):
            raise MessageValidationError(name, render_problem(err)) from err
        log.error("Rendering %s failed", label.format(field=name))
        raise


class FieldRendering:
    """Mixin for the mail operators: their templated fields rendered by ``Renderer``, mapped tasks too.

    Subclasses set ``body_field`` (the field that may name a file and may autoescape) and may list
    ``data_fields``: fields whose lists and dicts are data, never templates (mail-merge rows)."""

    template_ext: Sequence[str] = ()
    body_field = "body"
    data_fields: tuple[str, ...] = ()
    if TYPE_CHECKING:  # Airflow's Templater provides them; declared for the type checker
        task_id: str
        render_timeout: float | None
        execution_timeout: Any

        def render_template(self, content: Any, context: Any, jinja_env: Any = None,
                            seen_oids: Any = None) -> Any: ...

    def renderer(self, jinja_env) -> Renderer:
        """This operator's renderer: its time limit, and autoescape for an HTML body when asked."""
        return Renderer(jinja_env, seconds=render_seconds(self.render_timeout, self.execution_timeout),
                        body_field=self.body_field,
                        autoescape=getattr(self, "autoescape", False) and getattr(self, "body_type", "html") == "html",
                        label=f"the template of field {{field!r}} of task {self.task_id}")

    def _do_render_template_fields(self, parent, template_fields, context, jinja_env, seen_oids) -> None:
        if parent is not self:  # a nested object: Airflow's own rendering
            super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)  # type: ignore[misc]
            return
        renderer = self.renderer(jinja_env)
        for name in template_fields:
            value = getattr(self, name)
            if value is None or value == "" or value == [] or value == {}:
                continue
            if name in self.data_fields and isinstance(value, (list, tuple, dict)):
                continue  # row data is data: never rendered as a template
            try:
                with renderer.rendering(name):
                    rendered = self.render_template(renderer.source(name, value), context, renderer.env_for(name),
                                                    seen_oids)
            except (MessageValidationError, RenderTimeoutError) as err:  # a template's own fault
                fault = (err.__cause__ or err) if isinstance(err, MessageValidationError) else err
                raise fail_now(f"{name}: {render_problem(fault)}") from fault
            setattr(self, name, rendered)
