"""Airflow's own e-mail (failure and retry alerts, ``send_email``) through Microsoft Graph.

Set in airflow.cfg (or as AIRFLOW__EMAIL__EMAIL_BACKEND / AIRFLOW__EMAIL__EMAIL_CONN_ID)::

    [email]
    email_backend = airflow_graph_mail.email_backend.send_email
    email_conn_id = graph_mail_default
    from_email = alerts@contoso.com

Airflow 3.2.0 to 3.3.0 ignore this setting for ``email_on_failure`` / ``email_on_retry``; there the
provider's listener (``notifications/email_alerts.py``) calls ``send_email`` for them itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from airflow_graph_mail.airflow_face import DEFAULT_CONN_ID
from airflow_graph_mail.hooks.graph_mail import GraphMailHook
from airflow_graph_mail.notifications import airflow_email

# Airflow's default [email] email_conn_id: someone pointing the backend at Graph means Graph's default.
_SMTP_DEFAULT = "smtp_default"


def send_email(to: str | Iterable[str], subject: str, html_content: str, files: list[str] | None = None,
               dryrun: bool = False, cc: str | Iterable[str] | None = None, bcc: str | Iterable[str] | None = None,
               mime_subtype: str = "mixed", mime_charset: str = "utf-8", conn_id: str | None = None,
               custom_headers: dict[str, Any] | None = None, from_email: str | None = None, **kwargs) -> None:
    """The ``airflow.utils.email.send_email`` signature, sent with GraphMailHook.

    ``conn_id`` is ``[email] email_conn_id`` (a graph_mail or msgraph connection); when it is unset or
    Airflow's default ``smtp_default``, ``graph_mail_default`` is used. ``from_email`` picks the sending
    mailbox (unless it is Airflow's placeholder ``airflow@airflow``; then the connection's ``sender``).
    ``mime_subtype`` and ``mime_charset`` do not apply: Graph builds the MIME, always in UTF-8.
    """
    hook = GraphMailHook(graph_mail_conn_id=DEFAULT_CONN_ID if conn_id in (None, "", _SMTP_DEFAULT) else conn_id)
    airflow_email.send(hook, to, subject, html_content, files=files, cc=cc, bcc=bcc, custom_headers=custom_headers,
                       from_email=from_email, dryrun=dryrun)
