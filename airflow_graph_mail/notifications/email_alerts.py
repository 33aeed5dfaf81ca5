"""Airflow's own alert e-mail (``email_on_failure``, ``email_on_retry``) through our ``[email] email_backend``
on the Airflow versions that ignore the backend.

Airflow 3.2.0 to 3.2.2 and 3.3.0 (Task SDK 1.2.0 to 1.3.0) send these alerts with the smtp provider's
SmtpNotifier whatever ``[email] email_backend`` names (apache/airflow#65012): the Graph connection is used
as an SMTP server, or ``smtp_default`` is looked for, and no alert arrives. Task SDK 1.3.1 (Airflow 3.3.1)
calls the configured backend again (apache/airflow#69877). Where our backend is configured on such a
version, this listener sends the alert itself, from the task that failed, as 3.3.1 would: the same
subject and body (``[email] subject_template`` / ``html_content_template`` if set), rendered with the
task's context, through ``email_backend.send_email``. Everywhere else it does nothing.

It is an Airflow plugin (the ``airflow.plugins`` entry point) with a listener: Airflow's public way to act
when a task fails. What it cannot reach, it says when a scheduler, DAG processor or triggerer starts: a task
that fails outside its worker (a heartbeat timeout, a killed process) has its alert sent by the DAG
processor through the smtp provider, and only ``on_failure_callback=GraphMailNotifier(...)`` reaches it.
"""

from __future__ import annotations

import html
import logging
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, cast

from airflow.providers.common.compat.sdk import AirflowPlugin, conf, hookimpl
from packaging.version import Version

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

log = logging.getLogger(__name__)

BACKEND = "airflow_graph_mail.email_backend.send_email"
# Airflow's own alert text (airflow.sdk.execution_time.task_runner, 3.x), used unless [email] names templates.
SUBJECT = "Airflow alert: {{ti}}"
HTML = ("Try {{try_number}} out of {{max_tries + 1}}<br>Exception:<br>{{exception_html}}<br>"
        'Log: <a href="{{ti.log_url}}">Link</a><br>Host: {{ti.hostname}}<br>'
        'Mark success: <a href="{{ti.mark_success_url}}">Link</a><br>')
# Task SDK versions whose task runner sends alerts with SmtpNotifier only: [first, fixed).
IGNORING = ("1.2.0", "1.3.1")


def task_sdk_version() -> str | None:
    """The installed Task SDK's version; None on Airflow 2, which has none."""
    try:
        return version("apache-airflow-task-sdk")
    except PackageNotFoundError:
        return None


def ignores_email_backend(task_sdk: str | None) -> bool:
    """Whether the task runner of this Task SDK version ignores ``[email] email_backend``."""
    if task_sdk is None:
        return False
    first, fixed = IGNORING
    return Version(first) <= Version(task_sdk) < Version(fixed)


@cache
def _running_sdk_ignores() -> bool:
    return ignores_email_backend(task_sdk_version())


def _ours_ignored() -> bool:
    """Our backend is configured, and the running Airflow ignores it."""
    if not _running_sdk_ignores():
        return False
    return conf.get("email", "email_backend", fallback="").strip() == BACKEND


def _template(option: str, default: str) -> str:
    """``[email] <option>`` names a file with the text, as Airflow reads it."""
    path = conf.get("email", option, fallback=None)
    return Path(path).read_text() if path and Path(path).exists() else default


def send_alert(task_instance, error: BaseException) -> None:
    """Render Airflow's alert with the task's context and send it through our ``[email]`` backend."""
    # Every Airflow process loads this plugin; the sending side (the hook, the message model) only a failing task.
    from airflow_graph_mail.email_backend import send_email
    from airflow_graph_mail.notifications.graph_mail import GraphMailNotifier

    context = cast("Context", {**task_instance.get_template_context(), "exception": error,
                               "exception_html": html.escape(str(error)).replace("\n", "<br>"),
                               "try_number": task_instance.try_number, "max_tries": task_instance.max_tries})
    fields = GraphMailNotifier(to=task_instance.task.email, subject=_template("subject_template", SUBJECT),
                               html_content=_template("html_content_template", HTML),
                               from_email=conf.get("email", "from_email", fallback="airflow@airflow"),
                               ).rendered(context)
    send_email(fields["to"], fields["subject"], fields["html_content"],
               conn_id=conf.get("email", "email_conn_id", fallback=None), from_email=fields["from_email"])


class EmailAlertListener:
    """Sends the alert a task asked for where Airflow would send it through SMTP instead of our backend."""

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error):
        # Only the task runner passes the exception itself; the scheduler and the API pass text, and the
        # DAG processor's alerts for tasks that died outside a worker pass through no listener.
        if not isinstance(error, BaseException) or not _ours_ignored():
            return
        task = getattr(task_instance, "task", None)
        kind = "retry" if task_instance.state == "up_for_retry" else "failure"
        if task is None or not task.email or not getattr(task, f"email_on_{kind}", False):
            return
        log.warning("Task SDK %s ignores [email] email_backend for email_on_%s (apache/airflow#65012, fixed in "
                    "Airflow 3.3.1): airflow-graph-mail sends this alert through Graph itself. Airflow's own "
                    "attempt through the smtp provider follows and fails: its error can be ignored.",
                    task_sdk_version(), kind)
        try:
            send_alert(task_instance, error)
        except Exception:  # a listener must not stop Airflow's other listeners, nor the task's end
            log.exception("The email_on_%s alert of %s could not be sent through Graph", kind, task_instance.task_id)

    @hookimpl
    def on_starting(self, component):
        # Jobs (scheduler, DAG processor, triggerer) say it once as they start; a task says it as it fails.
        if type(component).__name__ == "TaskRunnerMarker" or not _ours_ignored():
            return
        log.warning(
            "Task SDK %s ignores [email] email_backend = %s for email_on_failure and email_on_retry "
            "(apache/airflow#65012, fixed in Airflow 3.3.1). airflow-graph-mail sends those alerts itself from "
            "the task that failed; a task that fails outside its worker (a heartbeat timeout, a killed process) "
            "gets none: give its DAG on_failure_callback=GraphMailNotifier(...), which every Airflow runs.",
            task_sdk_version(), BACKEND)


class GraphMailAlertsPlugin(AirflowPlugin):
    """Registers the listener (entry point ``airflow.plugins``); it acts only where Airflow ignores our backend."""

    name = "airflow_graph_mail_alerts"
    listeners = [EmailAlertListener()]
