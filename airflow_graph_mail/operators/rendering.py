"""How the mail operators' templated fields are rendered: the one place that touches Airflow's rendering.

What differs from Airflow's default, and why:
- Only ``body`` may name a template file (``report.html``); ``attachments=["out/summary.txt"]`` is a
  path to attach. So ``template_ext`` is empty, and the body's file is read here from the task's template
  search path.
- With ``autoescape=True`` an HTML body escapes every variable; the other fields never do (a subject
  is text, not HTML).
- Each field renders within a time limit (the operator's ``render_timeout``, or the task's
  ``execution_timeout`` if shorter): Airflow renders before the execution timeout starts, so an endless
  loop in a template would otherwise hold a worker forever. The error names the field.
- A template that raises from its own code (``{{ 1 / 0 }}``, endless recursion, a filter given the wrong
  type) fails the task at once like a template error, as ``<field>: <ErrorType>: <message>``; an error
  from outside (an XCom or a Variable out of reach) keeps the task's retries, its field logged.
- ``cid('chart.png')`` is available in every template.

The hook: Airflow renders a task through ``render_template_fields``, but a mapped task (``.expand()``)
is rendered by calling ``_do_render_template_fields`` on the unmapped operator directly (Airflow's own
comment there invites operators to override it). Overriding the public method alone would leave mapped
tasks with the default rendering, so this mixin overrides that one private method, and nothing else;
``tests/test_rendering.py`` checks its signature and that Airflow calls it, on every supported version.
Everything inside uses public API: ``render_template`` and ``get_template_env``.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

log = logging.getLogger(__name__)

BODY_TEMPLATE_EXT = (".html", ".htm", ".txt", ".j2")
# Fields that carry file content (``("report.csv", "a,b\n{{ ... }}\n")``).
CONTENT_FIELDS = ("attachments", "inline_images")
# Seconds a field may take to render when the task sets no shorter execution_timeout.
DEFAULT_RENDER_TIMEOUT = 60.0
# What a template's own code raises: the same on every try (with TemplateError and RenderTimeoutError).
TEMPLATE_FAULTS = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError,
                   AssertionError)


def is_template_file(value) -> bool:
    return isinstance(value, str) and value.lower().endswith(BODY_TEMPLATE_EXT) and "\n" not in value


@contextmanager
def time_limit(seconds: float | None, field):
    """Raise RenderTimeoutError(field) in this thread when the block runs longer than ``seconds``; ``field``
    may be a callable naming the field being rendered when time runs out (one alarm for several fields).

    Uses SIGALRM, as Airflow's execution_timeout does; an alarm already set (an execution_timeout while
    ``execute`` runs) is kept and restored, and wins when it is due first. Outside the main thread, or
    where there is no SIGALRM, the block runs without a limit."""
    from airflow_graph_mail.errors import RenderTimeoutError

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
    from jinja2 import TemplateError

    from airflow_graph_mail.errors import RenderTimeoutError

    return isinstance(err, (TemplateError, RenderTimeoutError, *TEMPLATE_FAULTS))


def render_problem(err: BaseException) -> str:
    """``<ErrorType>: <message>``, the way every render error is told (after the field it came from). An
    endless recursion's traceback (a thousand template frames) is dropped: the field and message say it."""
    if isinstance(err, RecursionError):
        err.with_traceback(None)
    return f"{type(err).__name__}: {err}"


def raise_permanent(field: str, err: Exception) -> None:
    """A template fault fails the task without using its retries (AirflowFailException, the error as its
    cause), as ``<field>: <ErrorType>: <message>``."""
    if is_template_fault(err):
        from airflow.providers.common.compat.sdk import AirflowFailException

        raise AirflowFailException(f"{field}: {render_problem(err)} (not retried: a retry cannot fix this)") from err


def content_env(field: str, jinja_env):
    """Attachment content keeps its last newline (Airflow's environment drops it: a CSV's final line
    break would be lost)."""
    if field not in CONTENT_FIELDS:
        return jinja_env
    env = jinja_env.overlay()  # overlay(keep_trailing_newline=...) needs Jinja 3.1.3; the attribute works on all
    env.keep_trailing_newline = True
    return env


def template_source(jinja_env, name: str) -> str:
    """A template file's text, from the DAG folder or its template_searchpath."""
    from jinja2 import TemplateNotFound

    if jinja_env.loader is None:
        raise TemplateNotFound(name)
    return jinja_env.loader.get_source(jinja_env, name)[0]


def render_seconds(render_timeout, execution_timeout) -> float | None:
    """The shorter of the operator's render_timeout and the task's execution_timeout, in seconds."""
    limits = [seconds for seconds in (_seconds(render_timeout), _seconds(execution_timeout)) if seconds]
    return min(limits) if limits else None


def _seconds(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


class FieldRendering:
    """Mixin for the mail operators: the rendering described in this module's docstring.

    Subclasses set ``body_field`` (the field that may name a file and may autoescape) and may list
    ``data_fields``: fields whose lists and dicts are data, never templates (mail-merge rows)."""

    template_ext: Sequence[str] = ()
    body_field = "body"
    data_fields: tuple[str, ...] = ()
    if TYPE_CHECKING:  # Airflow's Templater provides it; declared for the type checker
        def render_template(self, content: Any, context: Any, jinja_env: Any = None,
                            seen_oids: Any = None) -> Any: ...

    def body_env(self, jinja_env):
        """With ``autoescape`` an HTML body escapes every variable (``|safe`` opts a trusted value out)."""
        if getattr(self, "autoescape", False) and getattr(self, "body_type", "html") == "html":
            return jinja_env.overlay(autoescape=True)
        return jinja_env

    def _do_render_template_fields(self, parent, template_fields, context, jinja_env, seen_oids) -> None:
        if parent is not self:  # a nested object: Airflow's own rendering
            super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)  # type: ignore[misc]
            return
        from airflow_graph_mail.mail.attachments import cid

        jinja_env.globals.setdefault("cid", cid)  # <img src="{{ cid('chart.png') }}">
        limit = render_seconds(getattr(self, "render_timeout", DEFAULT_RENDER_TIMEOUT),
                               getattr(self, "execution_timeout", None))
        for name in template_fields:
            value = getattr(self, name)
            if value is None or value == "" or value == [] or value == {}:
                continue
            try:
                with time_limit(limit, name):
                    setattr(self, name, self.render_field(name, value, context, jinja_env, seen_oids))
            except Exception as err:
                log.error("Rendering the template of field %r of task %s failed", name,
                          getattr(self, "task_id", type(self).__name__))
                raise_permanent(name, err)
                raise

    def render_field(self, name: str, value, context, jinja_env, seen_oids):
        """One field's value, rendered; public ``render_template`` does the work."""
        if name in self.data_fields and isinstance(value, (list, tuple, dict)):
            return value  # row data is data: never rendered as a template
        if name == self.body_field:
            env = self.body_env(jinja_env)
            if is_template_file(value):
                value = template_source(jinja_env, value)
            return self.render_template(value, context, env, seen_oids)
        return self.render_template(value, context, content_env(name, jinja_env), seen_oids)
