"""GraphMailNotifier: failure (and other) callbacks that e-mail through Microsoft Graph."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.notifier import BaseNotifier

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

TEMPLATES = Path(__file__).parent / "templates"
TASK_SUBJECT = "[Airflow] {{ ti.dag_id }}.{{ ti.task_id }} failed (try {{ ti.try_number }} of {{ ti.max_tries + 1 }})"
DAG_SUBJECT = "[Airflow] DAG {{ dag.dag_id }} failed: {{ run_id }}"


class GraphMailNotifier(BaseNotifier):
    """E-mail a callback's context through Microsoft Graph.

    Without ``subject`` / ``html_content`` it sends a failure report: for a task (DAG, task, run, try of
    tries, host, the exception, a link to the log) or, in a DAG's ``on_failure_callback``, for the run
    (reason, last task). Both are Jinja templates rendered with the callback's context, as are the fields
    listed in ``template_fields``; ``html_content`` may name a ``.html``/``.j2`` file on the DAG's
    template search path.

    :param to: recipients: a list, or a string with ',' or ';' between addresses.
    :param from_email: the mailbox to send from; default: the connection's ``sender``.
    :param files: paths (or globs, fsspec URIs) to attach.
    :param custom_headers: ``x-`` headers to add.
    :param graph_mail_conn_id: the Airflow connection to send with.
    """

    template_fields: Sequence[str] = ("to", "from_email", "subject", "html_content", "files", "cc", "bcc",
                                      "custom_headers", "graph_mail_conn_id")
    template_ext: Sequence[str] = (".html", ".j2")

    def __init__(self, to: str | Iterable[str], *, from_email: str | None = None, subject: str | None = None,
                 html_content: str | None = None, files: list[str] | None = None,
                 cc: str | Iterable[str] | None = None, bcc: str | Iterable[str] | None = None,
                 custom_headers: dict[str, Any] | None = None, graph_mail_conn_id: str = "graph_mail_default",
                 context: Context | None = None):
        super().__init__()
        if context is not None:  # Airflow 3.1+: deadline alerts pass the context here and await the notifier
            self.context = context
        self.to, self.from_email, self.cc, self.bcc = to, from_email, cc, bcc
        self.subject, self.html_content = subject, html_content
        self.files, self.custom_headers = files, custom_headers
        self.graph_mail_conn_id = graph_mail_conn_id

    def resolve_template_files(self) -> None:
        """Template files are read when the notifier runs, from the DAG's search path; parsing reads none."""
        self.prepare_template()

    def _fill_defaults(self, context: Context) -> None:
        dag_level = "reason" in context  # DAG callbacks carry why the run ended; task callbacks do not
        defaults = {}
        if self.subject is None:
            defaults["subject"] = DAG_SUBJECT if dag_level else TASK_SUBJECT
        if self.html_content is None:
            defaults["html_content"] = (TEMPLATES / ("dag_failure.html" if dag_level else "task_failure.html")
                                        ).read_text()
        if defaults:
            jinja_env = self.get_template_env(dag=context.get("dag"))
            for name, template in defaults.items():
                setattr(self, name, jinja_env.from_string(template).render(**context))

    def notify(self, context: Context) -> None:
        from airflow_graph_mail.hooks.graph_mail import GraphMailHook
        from airflow_graph_mail.mail import airflow_email

        self._fill_defaults(context)
        airflow_email.send(GraphMailHook(graph_mail_conn_id=self.graph_mail_conn_id), self.to, self.subject,
                           self.html_content, files=self.files, cc=self.cc, bcc=self.bcc,
                           custom_headers=self.custom_headers, from_email=self.from_email)

    async def async_notify(self, context: Context) -> None:
        """For the triggerer (deadline alerts): the same send, in a worker thread so the loop keeps running."""
        import asyncio

        await asyncio.to_thread(self.notify, context)
