"""GraphMailSensor: wait until mail matching a filter is in a mailbox folder; return what it is.

Importing this module stays cheap (no msal or requests): the client loads when the hook connects, the trigger
when the sensor defers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    conf,
)

from airflow_graph_mail.airflow_face import DEFAULT_CONN_ID, MESSAGE_IDS_KEY, check_options, fail_without_retries
from airflow_graph_mail.errors import GraphConfigError
from airflow_graph_mail.hooks.graph_mail import GraphMailHook
from airflow_graph_mail.mail.inbound import MailFilter, check_scope, utc_text

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

MODES = ("claim", "window", "off")


def default_scope(dag_id: str, task_id: str) -> str:
    """The marks' scope of a sensor: its DAG and task, made to fit (a hash keeps long ones distinct)."""
    text = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{dag_id}.{task_id}").lstrip("_.-") or "sensor"
    if len(text) > 64:
        text = text[:47] + "." + hashlib.sha256(text.encode()).hexdigest()[:16]
    return text


class GraphMailSensor(BaseSensorOperator):
    """Wait until mail matching a filter arrives in a mailbox folder (a user's or a shared mailbox); return the
    matching mail's summaries (id, internet message id, sender, subject, received time, attachment names,
    Authentication-Results), oldest first, and push their ids as XCom ``message_ids``.

    One sensor success per mail (``exactly_once``):

    - ``"claim"`` (default): the mail it returns is marked claimed by this run (``dag_id/run_id/task_id``, an
      invisible extended property; a retry of the task recognises its own), and mail claimed by another run
      is skipped. Graph offers no compare-and-set, so this is exact with ONE claimer at a time per mailbox,
      folder and filter: give the DAG ``max_active_runs=1`` (or the task a pool of one), or use the asset
      watcher with ``run_once_per_mail`` (Airflow 3), which is exact with any number. Needs Mail.ReadWrite.
    - ``"window"``: read-only (Mail.Read is enough): the run takes the mail received within its data interval,
      once the interval has ended and ``window_grace`` seconds passed; none there skips the task. Every mail
      belongs to exactly one scheduled run.
    - ``"off"``: every matching mail, every time.

    A filter on the sender is not authentication: anyone can write any From. ``require_authenticated=True``
    takes only mail whose Authentication-Results (added by Exchange Online Protection) say DMARC or compauth
    passed for the From domain. Subjects, names and bodies are data: never rendered as templates.

    :param mailbox: the mailbox (a user's or a shared one); default: the connection's sender. (templated)
    :param folder: a folder's well-known name (``inbox``, ``archive``...) or id; default ``inbox``. (templated)
    :param sender: an address or ``@domain``, or a list of them (the From address). (templated)
    :param subject: text the subject contains (any case). (templated)
    :param received_after: only mail received at or after this time (ISO 8601 or a datetime), e.g.
        ``"{{ data_interval_start }}"``; default: ``lookback`` seconds ago. (templated)
    :param has_attachments: True or False to require it (inline images do not count, as in Graph).
    :param attachment_name: a glob some attachment's name matches, any case (``*.csv``). (templated)
    :param raw_filter: a Graph ``$filter`` expression added to the query, e.g.
        ``"importance eq 'high'"``. (templated)
    :param require_authenticated: only mail whose sender passed DMARC or compauth.
    :param exactly_once: ``"claim"``, ``"window"`` or ``"off"`` (above).
    :param claim_scope: names the claim mark (default: the DAG and task ids); sensors with the same scope
        share claims.
    :param window_grace: seconds after the data interval's end to wait for late mail (window mode; default 300).
    :param lookback: seconds back to look when ``received_after`` is not given (default 7 days).
    :param max_messages: the most mail one success returns (default 100; the rest waits for the next run).
    :param deferrable: wait in the triggerer; default from ``[operators] default_deferrable``. Otherwise
        ``mode="reschedule"`` or ``"poke"``, ``poke_interval`` (default 60) and ``timeout`` as for any sensor.
    :param graph_mail_conn_id: the Airflow connection to use.
    """

    template_fields: Sequence[str] = ("mailbox", "folder", "sender", "subject", "received_after", "attachment_name",
                                      "raw_filter")
    ui_color = "#cfe4f7"

    def __init__(self, *, mailbox: str | None = None, folder: str = "inbox", sender: str | list[str] | None = None,
                 subject: str | None = None, received_after: str | dt.datetime | None = None,
                 has_attachments: bool | None = None, attachment_name: str | None = None,
                 raw_filter: str | None = None, require_authenticated: bool = False, exactly_once: str = "claim",
                 claim_scope: str | None = None, window_grace: float = 300.0, lookback: float = 7 * 86400.0,
                 max_messages: int = 100,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 graph_mail_conn_id: str = DEFAULT_CONN_ID, **kwargs) -> None:
        kwargs.setdefault("poke_interval", 60)
        super().__init__(**kwargs)
        check_options(has_attachments=(has_attachments, (bool,)),
                      require_authenticated=(require_authenticated, (bool,)), exactly_once=(exactly_once, (str,)),
                      claim_scope=(claim_scope, (str,)),
                      window_grace=(window_grace, (int, float)), lookback=(lookback, (int, float)),
                      max_messages=(max_messages, (int,)), deferrable=(deferrable, (bool,)),
                      graph_mail_conn_id=(graph_mail_conn_id, (str,)))
        if exactly_once not in MODES:
            raise GraphConfigError(f"exactly_once: {exactly_once!r} is not one of {', '.join(MODES)}")
        if claim_scope is not None:
            check_scope("claim_scope", claim_scope)
        if max_messages < 1:
            raise GraphConfigError(f"max_messages: {max_messages} must be 1 or more")
        self.mailbox, self.folder = mailbox, folder
        self.sender, self.subject, self.received_after = sender, subject, received_after
        self.has_attachments, self.attachment_name, self.raw_filter = has_attachments, attachment_name, raw_filter
        self.require_authenticated = require_authenticated
        self.exactly_once, self.claim_scope = exactly_once, claim_scope
        self.window_grace, self.lookback, self.max_messages = float(window_grace), float(lookback), max_messages
        self.deferrable = deferrable
        self.graph_mail_conn_id = graph_mail_conn_id

    # -- what to look for ---------------------------------------------------------------------------

    def _filter(self) -> MailFilter:
        return MailFilter.of(sender=self.sender, subject=self.subject, received_after=self.received_after or None,
                             has_attachments=self.has_attachments, attachment_name=self.attachment_name,
                             raw_filter=self.raw_filter, require_authenticated=self.require_authenticated)

    def _plan(self, context: Context) -> dict:
        """Where to look (since, until), whose claims count (scope, claimer), and when to start (window)."""
        plan: dict[str, Any] = {"since": None, "until": None, "scope": None, "claimer": None, "not_before": None}
        if self.exactly_once == "window":
            start, end = context.get("data_interval_start"), context.get("data_interval_end")
            if start is None or end is None:
                raise GraphConfigError("exactly_once: 'window' needs a run with a data interval (a scheduled run); "
                                       "use 'claim' for runs without one")
            plan.update(since=utc_text(start, "data_interval_start"), until=utc_text(end, "data_interval_end"),
                        not_before=end.timestamp() + self.window_grace)
            return plan
        plan["since"] = utc_text(dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=self.lookback), "lookback")
        if self.exactly_once == "claim":
            ti = context["ti"]
            who = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}"
            plan.update(scope=self.claim_scope or default_scope(ti.dag_id, ti.task_id),
                        claimer=who if ti.map_index is None or ti.map_index < 0 else f"{who}/{ti.map_index}")
        return plan

    def _look(self, context: Context) -> list[dict] | None:
        """The mail this run takes now (claimed, in claim mode), or None to keep waiting."""
        from airflow_graph_mail.graph.inbound import MailboxReader, find_mail  # the client's stack

        with fail_without_retries():
            mail_filter, plan = self._filter(), self._plan(context)
            if plan["not_before"] is not None and time.time() < plan["not_before"]:
                self.log.info("Waiting for the end of the window (and %.0fs of grace) before reading it",
                              self.window_grace)
                return None
            reader = MailboxReader(self._hook().client, self.mailbox, self.folder)
            found = find_mail(reader, mail_filter, since=plan["since"], until=plan["until"], scope=plan["scope"],
                              claimer=plan["claimer"], limit=self.max_messages)
            if plan["scope"]:
                found = reader.claim_all(found, plan["scope"], plan["claimer"])
        if not found and self.exactly_once == "window":
            raise AirflowSkipException(f"No matching mail was received in {plan['since']} to {plan['until']}")
        if not found:
            self.log.info("No matching mail in %s/%s yet", reader.mailbox, self.folder)
            return None
        self.log.info("Found %d message(s) in %s/%s: %s", len(found), reader.mailbox, self.folder,
                      ", ".join(s["message_id"] for s in found[:10]))
        return found

    # -- poke and reschedule modes --------------------------------------------------------------------

    _found: list[dict] = []  # what the last successful look took

    def poke(self, context: Context) -> bool:
        found = self._look(context)
        if found:
            self._found = found
            context["ti"].xcom_push(key=MESSAGE_IDS_KEY, value=[s["message_id"] for s in found])
        return bool(found)

    def execute(self, context: Context) -> Any:
        self._found = []
        if not self.deferrable:
            super().execute(context)
            return self._found
        if self.poke(context):
            return self._found
        self._defer(context, time.time() + float(self.timeout) if self.timeout else None)
        return None  # not reached: defer() raises

    def _defer(self, context: Context, deadline: float | None) -> None:
        from airflow_graph_mail.triggers.inbound import GraphMailSensorTrigger  # airflow.triggers, asyncio

        plan = self._plan(context)
        self.defer(trigger=GraphMailSensorTrigger(
            graph_mail_conn_id=self.graph_mail_conn_id, mailbox=self.mailbox, folder=self.folder,
            filter=self._filter().as_kwargs(), since=plan["since"], until=plan["until"], scope=plan["scope"],
            claimer=plan["claimer"], poke_interval=float(self.poke_interval), deadline=deadline,
            not_before=plan["not_before"]), method_name="execute_complete", kwargs={"deadline": deadline})

    def execute_complete(self, context: Context, event: dict[str, Any], deadline: float | None = None) -> Any:
        status = (event or {}).get("status")
        if status == "found":
            if self.poke(context):
                return self._found
            self.log.info("The mail found was taken by another run meanwhile; waiting again")
            self._defer(context, deadline)
        if status == "timeout":
            raise AirflowSensorTimeout(f"No matching mail within {self.timeout}s")
        error = (event or {}).get("error", event)
        if (event or {}).get("permanent"):
            raise AirflowFailException(error)
        raise AirflowException(f"Waiting for mail failed: {error}")

    def _hook(self) -> GraphMailHook:
        return GraphMailHook(graph_mail_conn_id=self.graph_mail_conn_id)
