"""GraphMailNotifier: failure (and other) callbacks that e-mail through Microsoft Graph."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.common.compat.notifier import BaseNotifier
from jinja2 import FileSystemLoader

from airflow_graph_mail.airflow_face import DEFAULT_CONN_ID
from airflow_graph_mail.hooks.graph_mail import GraphMailHook
from airflow_graph_mail.rendering import Renderer, render_seconds

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

TEMPLATES = Path(__file__).parent / "templates"
TASK_SUBJECT = "[Airflow] {{ ti.dag_id }}.{{ ti.task_id }} failed (try {{ ti.try_number }} of {{ ti.max_tries + 1 }})"
DAG_SUBJECT = "[Airflow] DAG {{ dag.dag_id }} failed: {{ run_id }}"
HITL_SUBJECT = "[Airflow] Your input is needed: {{ hitl.subject }}"
HTML_TEMPLATE_EXT = (".html", ".j2")


class GraphMailNotifier(BaseNotifier):
    """E-mail a callback's context through Microsoft Graph.

    Without ``subject`` / ``html_content`` it sends a failure report: for a task (DAG, task, run, try of
    tries, host, the exception, a link to the log) or, in a DAG's ``on_failure_callback``, for the run
    (reason, last task). Both are Jinja templates rendered with the callback's context, as are the fields
    listed in ``template_fields``; ``html_content`` may name a ``.html``/``.j2`` file on the DAG's
    template search path.

    One instance may serve many callbacks (``default_args``, several DAGs): each call renders its own
    copy of the fields and leaves the notifier as it was built.

    :param to: recipients: a list, or a string with ',' or ';' between addresses.
    :param from_email: the mailbox to send from; default: the connection's ``sender``.
    :param files: paths (or globs, fsspec URIs) to attach.
    :param custom_headers: headers to add (``x-`` headers go as Graph headers, others through MIME).
    :param graph_mail_conn_id: the Airflow connection to send with.
    :param render_timeout: seconds each field may take to render (default 60).
    """

    template_fields: Sequence[str] = ("to", "from_email", "subject", "html_content", "files", "cc", "bcc",
                                      "custom_headers", "graph_mail_conn_id")
    template_ext: Sequence[str] = ()  # html_content names a file by its extension; files are paths to attach

    def __init__(self, to: str | Iterable[str], *, from_email: str | None = None, subject: str | None = None,
                 html_content: str | None = None, files: list[str] | None = None,
                 cc: str | Iterable[str] | None = None, bcc: str | Iterable[str] | None = None,
                 custom_headers: dict[str, Any] | None = None, graph_mail_conn_id: str = DEFAULT_CONN_ID,
                 render_timeout: float | None = 60.0, context: Context | None = None):
        super().__init__()
        if context is not None:  # Airflow 3.1+: deadline alerts pass the context here and await the notifier
            self.context = context
        self.to, self.from_email, self.cc, self.bcc = to, from_email, cc, bcc
        self.subject, self.html_content = subject, html_content
        self.files, self.custom_headers = files, custom_headers
        self.graph_mail_conn_id = graph_mail_conn_id
        self.render_timeout = render_timeout

    def render_template_fields(self, context: Context, jinja_env=None) -> None:
        """Nothing here: ``notify`` renders each call's fields into a copy, so that a reused notifier never
        sends an earlier alert's text, nor renders an earlier exception's text as a template."""

    def rendered(self, context: Context) -> dict[str, Any]:
        """This call's fields, rendered with its context (defaults for a task or DAG failure filled in). A
        template's own fault (``{{ 1 / 0 }}``, endless recursion, an undefined name) is raised as
        ``<field>: <ErrorType>: <message>``, the template's exception as its cause: a callback's error is all
        Airflow's log shows. A failure from outside (a service a macro calls) keeps its type; the log names
        the field."""
        renderer = Renderer(self._template_env(context), seconds=render_seconds(self.render_timeout),
                            body_field="html_content", body_files=HTML_TEMPLATE_EXT,
                            label="the notifier's field {field!r}")
        dag_level = "reason" in context  # DAG callbacks carry why the run ended; task callbacks do not
        hitl = hitl_request(context)
        values = {name: getattr(self, name) for name in self.template_fields}
        if values["subject"] is None:
            values["subject"] = HITL_SUBJECT if hitl else DAG_SUBJECT if dag_level else TASK_SUBJECT
        if values["html_content"] is None:
            values["html_content"] = (TEMPLATES / ("hitl_request.html" if hitl else "dag_failure.html" if dag_level
                                                   else "task_failure.html")).read_text()
        if hitl:
            context = cast("Context", {**context, "hitl": hitl})
        if "dag" not in context:  # Airflow 2 reads context["dag"] while rendering; a deadline alert has none
            context = cast("Context", {**context, "dag": None})
        out = {}
        for name, value in values.items():
            if value in (None, ""):
                out[name] = value
                continue
            with renderer.rendering(name):
                template = value if hitl else renderer.source(name, value)  # a HITL request's body is ours
                out[name] = self.render_template(template, context, renderer.env_for(name))
        return out

    def _template_env(self, context: Context):
        """The DAG's environment (search path, macros). A DAG callback may get a serialized DAG, which
        has no environment of its own: then a plain one with the DAG's folder and search path."""
        dag = context.get("dag")
        if dag is not None and hasattr(dag, "get_template_env"):
            return self.get_template_env(dag=dag)
        env = self.get_template_env(dag=None)
        fileloc = getattr(dag, "fileloc", None)
        folders = [str(Path(fileloc).parent)] if fileloc else []
        folders += list(getattr(dag, "template_searchpath", None) or [])
        if folders:
            env.loader = FileSystemLoader(folders)
        return env

    def notify(self, context: Context) -> None:
        from airflow_graph_mail.notifications import airflow_email  # the message model: not paid by DAG parsing

        fields = self.rendered(context)
        airflow_email.send(GraphMailHook(graph_mail_conn_id=fields["graph_mail_conn_id"]), fields["to"],
                           fields["subject"], fields["html_content"], files=fields["files"], cc=fields["cc"],
                           bcc=fields["bcc"], custom_headers=fields["custom_headers"],
                           from_email=fields["from_email"])

    async def async_notify(self, context: Context) -> None:
        """For the triggerer (deadline alerts): the same send, in a worker thread so the loop keeps running."""
        await asyncio.to_thread(self.notify, context)


def hitl_request(context: Context) -> dict[str, Any] | None:
    """What a human-in-the-loop task (Airflow 3.1+'s HITLOperator, ApprovalOperator...) asks, when the notifier
    is one of its ``notifiers``: subject, body, options, defaults, timeout and the link to respond."""
    task = context.get("task")
    if task is None or not hasattr(task, "generate_link_to_ui_from_context") or not hasattr(task, "options"):
        return None
    try:
        link = task.generate_link_to_ui_from_context(context=context)
    except ValueError:  # no [api] base_url configured
        link = ""
    timeout = getattr(task, "response_timeout", None)
    return {"subject": fold(getattr(task, "subject", None) or ""), "body": getattr(task, "body", None) or "",
            "options": list(task.options), "defaults": list(getattr(task, "defaults", None) or []),
            "multiple": bool(getattr(task, "multiple", False)), "timeout": str(timeout) if timeout else "",
            "link": link}


def fold(text: str) -> str:
    """One line: each line break (and the spaces around it) becomes one space. An approval question may
    span lines in Airflow's UI; a mail subject cannot."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())
