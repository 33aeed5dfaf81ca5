"""GraphBounceReportOperator: who did not get the mail, from the non-delivery reports Exchange sends back.

Importing this module stays cheap, like the other operators: the hook and the report reader are imported
where they are used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf

from airflow_graph_mail.operators.graph_mail import OUTCOMES_KEY, check_options

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

BOUNCES_KEY = "bounces"


def _time_delta_trigger(delta: timedelta):
    try:  # Airflow 3 (and 2.x with the standard provider)
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
    except ImportError:  # Airflow 2.11 without it
        from airflow.triggers.temporal import TimeDeltaTrigger  # type: ignore[no-redef]
    return TimeDeltaTrigger(delta)


class GraphBounceReportOperator(BaseOperator):
    """After a send, a reviewed draft or a mail merge: wait ``settle``, then report every recipient whose mail
    bounced, from the non-delivery reports (NDRs) in the sender's Inbox.

    NDRs are matched to the mails of the tasks in ``sent_by`` by a header every keyed mail carries (a digest
    of its idempotency key), never by subject. Per bounced recipient the task returns and pushes (XCom
    ``bounces``) the address, the status code, its meaning in words, the diagnostic, and the task, position
    and key of the mail; it also pushes ``outcomes``: the upstream outcomes, each with its ``bounces``.

    :param sent_by: task ids whose mails to report on: GraphSendMailOperator, GraphMailMergeOperator,
        GraphSendDraftOperator or GraphDraftSentSensor. (templated)
    :param settle: how long to wait for NDRs after the upstream tasks (default 10 minutes: Exchange sends most
        within a minute, remote servers can take longer).
    :param fail_on_bounce: True fails the task on any bounce, False never; a number between 0 and 1 fails it
        when the share of mails with a bounce is above it (0.05: more than 5% of mails).
    :param deferrable: wait in the triggerer, not in a worker slot; default from
        ``[operators] default_deferrable``.
    :param sender: the mailbox that sent them; defaults to the connection's ``sender``. (templated)
    :param graph_mail_conn_id: the Airflow connection to use.
    """

    template_fields: Sequence[str] = ("sent_by", "sender")
    ui_color = "#f7dccf"

    def __init__(self, *, sent_by: str | Sequence[str], settle: timedelta | float = timedelta(minutes=10),
                 fail_on_bounce: bool | float = True, sender: str | None = None,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 graph_mail_conn_id: str = "graph_mail_default", **kwargs) -> None:
        super().__init__(**kwargs)
        check_options(sent_by=(sent_by, (str, list, tuple)), settle=(settle, (timedelta, int, float)),
                      fail_on_bounce=(fail_on_bounce, (bool, int, float)), deferrable=(deferrable, (bool,)),
                      graph_mail_conn_id=(graph_mail_conn_id, (str,)))
        from airflow_graph_mail.errors import GraphConfigError

        if not isinstance(fail_on_bounce, bool) and not 0 <= fail_on_bounce <= 1:
            raise GraphConfigError(f"fail_on_bounce: {fail_on_bounce!r} is not True, False or a share between 0 "
                                   "and 1")
        self.settle = settle if isinstance(settle, timedelta) else timedelta(seconds=settle)
        if self.settle < timedelta(0):
            raise GraphConfigError("settle: must not be negative")
        self.sent_by = sent_by
        self.fail_on_bounce = fail_on_bounce
        self.sender = sender
        self.deferrable = deferrable
        self.graph_mail_conn_id = graph_mail_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        sent = self._sent(context)  # nothing to report on is an error now, not after the wait
        seconds = self.settle.total_seconds()
        if seconds > 0:
            self.log.info("Waiting %s for non-delivery reports", self.settle)
            if self.deferrable:
                self.defer(trigger=_time_delta_trigger(self.settle), method_name="execute_complete")
            time.sleep(seconds)
        return self._report(context, sent)

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        return self._report(context, self._sent(context))  # a new process: read the upstream outcomes again

    # -- what the upstream tasks sent -------------------------------------------------------------

    def _task_ids(self) -> list[str]:
        return [self.sent_by] if isinstance(self.sent_by, str) else list(self.sent_by)

    def _sent(self, context: Context) -> list[dict]:
        """Every upstream outcome that went out, with the task it came from and the ref its NDR will carry."""
        from airflow_graph_mail.errors import GraphConfigError
        from airflow_graph_mail.mail.ndr import ref_for

        sent = []
        for task_id in self._task_ids():
            outcomes = context["ti"].xcom_pull(task_ids=task_id, key=OUTCOMES_KEY)
            if outcomes is None:
                raise GraphConfigError(f"sent_by: task {task_id!r} pushed no '{OUTCOMES_KEY}' XCom; name a task that "
                                       "sends mail (GraphSendMailOperator, GraphMailMergeOperator, "
                                       "GraphSendDraftOperator, GraphDraftSentSensor) and that ran before this one")
            for outcome in outcomes:
                ref = outcome.get("ref") or (ref_for(outcome["key"]) if outcome.get("key") else "")
                sent.append({**outcome, "task_id": task_id, "ref": ref})
        unmatched = [o for o in sent if o["status"] in ("sent", "already_sent") and not o["ref"]]
        if unmatched:
            raise GraphConfigError(f"sent_by: {len(unmatched)} mail(s) of {unmatched[0]['task_id']!r} were sent with "
                                   "idempotency_key=False, so no bounce can be tied to them; turn keys on")
        return sent

    # -- the report --------------------------------------------------------------------------------

    def _report(self, context: Context, sent: list[dict]) -> dict[str, Any]:
        from airflow_graph_mail.hooks.graph_mail import GraphMailHook
        from airflow_graph_mail.mail.ndr import NDR_FILTER, read_report
        from airflow_graph_mail.operators.failures import retries_only_when_useful

        by_ref = {o["ref"]: o for o in sent if o["ref"]}
        since = _run_start(context)
        query = NDR_FILTER + (f" and receivedDateTime ge {since}" if since else "")
        bounces = []
        with retries_only_when_useful():
            hook = GraphMailHook(graph_mail_conn_id=self.graph_mail_conn_id)
            reports = list(hook.list_messages(sender=self.sender, folder="inbox", filter=query,
                                              select=("id", "receivedDateTime")))
            for ndr in reports:
                report = read_report(hook.get_mime(ndr["id"], sender=self.sender))
                origin = by_ref.get(report.ref) if report else None
                if origin is None:
                    continue  # a report about some other mail
                for bounce in report.bounces:  # type: ignore[union-attr]
                    bounces.append({"address": bounce.address, "status": bounce.status, "meaning": bounce.meaning,
                                    "diagnostic": bounce.diagnostic, "task_id": origin["task_id"],
                                    "position": origin.get("position", 0), "key": origin.get("key"),
                                    "subject": origin.get("subject", ""), "reported_at": ndr.get("receivedDateTime")})
        mails = sum(1 for o in sent if o["status"] in ("sent", "already_sent"))
        self.log.info("Read %d non-delivery report(s) since %s: %d bounce(s) of %d mail(s) sent", len(reports),
                      since or "ever", len(bounces), mails)
        for bounce in bounces:
            self.log.warning("Bounced: %s (%s %s) from %s[%s] %r", bounce["address"], bounce["status"],
                             bounce["meaning"], bounce["task_id"], bounce["position"], bounce["subject"])
        ti = context["ti"]
        ti.xcom_push(key=BOUNCES_KEY, value=bounces)
        ti.xcom_push(key=OUTCOMES_KEY, value=_with_bounces(sent, bounces))
        bounced = len({(b["task_id"], b["position"]) for b in bounces})
        self._judge(bounces, bounced, mails)
        return {"mails": mails, "bounced_mails": bounced, "bounces": bounces}

    def _judge(self, bounces: list[dict], bounced: int, mails: int) -> None:
        """fail_on_bounce: True (any), False (never) or the share of mails with a bounce that is too many."""
        if not bounced or self.fail_on_bounce is False:
            return
        share = bounced / mails if mails else 1.0
        if self.fail_on_bounce is True or share > self.fail_on_bounce:
            from airflow.providers.common.compat.sdk import AirflowFailException

            shown = ", ".join(f"{b['address']} ({b['status']} {b['meaning']})" for b in bounces[:10])
            limit = "" if self.fail_on_bounce is True else f", above fail_on_bounce={self.fail_on_bounce:g}"
            raise AirflowFailException(f"{bounced} of {mails} mail(s) bounced ({share:.0%}{limit}): {shown}"
                                       + (f" and {len(bounces) - 10} more" if len(bounces) > 10 else ""))


def _run_start(context: Context) -> str:
    """The DAG run's start as Graph's $filter takes a time (NDRs for this run's mails arrive after it)."""
    dag_run = context.get("dag_run")
    start = getattr(dag_run, "start_date", None) if dag_run is not None else None
    if start is None:
        return ""
    from datetime import timezone

    return (start - timedelta(minutes=1)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_bounces(sent: list[dict], bounces: list[dict]) -> list[dict]:
    """The upstream outcomes, each with the bounces of its mail (an empty list when it had none)."""
    found: dict[tuple, list[dict]] = {}
    for bounce in bounces:
        found.setdefault((bounce["task_id"], bounce["position"]), []).append(
            {k: bounce[k] for k in ("address", "status", "meaning", "diagnostic")})
    return [{**o, "bounces": found.get((o["task_id"], o.get("position", 0)), [])} for o in sent]
