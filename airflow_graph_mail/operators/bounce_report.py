"""GraphBounceReportOperator: who did not get the mail, from the non-delivery reports Exchange sends back.

Importing this module stays cheap, like the other operators: the hook and the report reader are imported
where they are used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import timedelta, timezone
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, conf

from airflow_graph_mail.airflow_face import (
    BOUNCES_KEY,
    DEFAULT_CONN_ID,
    OUTCOMES_KEY,
    check_options,
    fail_without_retries,
)
from airflow_graph_mail.errors import GraphConfigError, UnreadableReportError
from airflow_graph_mail.hooks.graph_mail import GraphMailHook
from airflow_graph_mail.mail.ndr import NDR_FILTER, address_key, read_report
from airflow_graph_mail.outcomes import Outcome, Status

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

_WENT_OUT = (Status.SENT, Status.ALREADY_SENT)


class _Sent(NamedTuple):
    """One upstream mail: the task that sent it, and its outcome."""

    task_id: str
    outcome: Outcome


def _time_delta_trigger(delta: timedelta):
    try:  # Airflow 3 (and 2.x with the standard provider)
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
    except ImportError:  # Airflow 2.11 without it
        from airflow.triggers.temporal import TimeDeltaTrigger  # type: ignore[no-redef]
    return TimeDeltaTrigger(delta)


class GraphBounceReportOperator(BaseOperator):
    """After a send, a reviewed draft or a mail merge: wait until the mails have left the Outbox (Exchange lets
    30 a minute go, and reports a bounce only after a mail left), then ``settle``, then report every recipient
    whose mail bounced, from the non-delivery reports (NDRs) in the sender's Inbox.

    NDRs are matched to the mails of the tasks in ``sent_by`` by a header every keyed mail carries (a keyed
    hash of its idempotency key), never by subject; a failed address counts only when it was a recipient of
    that mail, and once. Per bounced recipient the task returns and pushes (XCom ``bounces``) the address,
    the status code, its meaning in words, the diagnostic, and the task, position and key of the mail; it also
    pushes ``outcomes``: the upstream outcomes, each with its ``bounces``. A report that cannot be read is
    skipped with a warning naming it, never failing the task.

    Bounces for the sender's own limits (5.1.90, 5.2.2 "submission quota exceeded": the mailbox's 24-hour
    window; 5.7.233, 5.7.232: the tenant's external recipients; 5.5.3: too many recipients per message) are
    rate limited, not bad addresses: each says so (``kind`` "rate_limited" and ``advice``), and the return
    value's ``resend`` lists their rows, to send again later. Address bounces are ``kind`` "address".

    :param sent_by: task ids whose mails to report on: GraphSendMailOperator, GraphMailMergeOperator,
        GraphSendDraftOperator or GraphDraftSentSensor. (templated)
    :param settle: how long to wait for NDRs once the mails have left the Outbox (default 10 minutes: Exchange
        sends most within a minute, remote servers can take longer).
    :param poke_interval: seconds between looks at the Outbox while mails wait there.
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
                 graph_mail_conn_id: str = DEFAULT_CONN_ID, poke_interval: float = 60.0, **kwargs) -> None:
        super().__init__(**kwargs)
        check_options(sent_by=(sent_by, (str, list, tuple)), settle=(settle, (timedelta, int, float)),
                      fail_on_bounce=(fail_on_bounce, (bool, int, float)), deferrable=(deferrable, (bool,)),
                      graph_mail_conn_id=(graph_mail_conn_id, (str,)), poke_interval=(poke_interval, (int, float)))
        if not (math.isfinite(poke_interval) and poke_interval > 0):
            raise GraphConfigError(f"poke_interval: {poke_interval!r}; give the seconds between looks at the Outbox "
                                   "(more than 0)")
        self.poke_interval = float(poke_interval)
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
        self._wait_for_outbox(sent)
        return self.settle_then_report(context)

    def _wait_for_outbox(self, sent: list[_Sent]) -> None:
        """Until the mails that leave last have left the Outbox (the others left before them)."""
        from airflow_graph_mail.graph.outbox import last_to_leave, waiting

        keys = last_to_leave(s.outcome for s in sent if s.outcome.status in _WENT_OUT)
        if not keys:
            return
        with fail_without_retries():
            client = GraphMailHook(graph_mail_conn_id=self.graph_mail_conn_id).client
            if not waiting(client, keys, self.sender):
                return
            self.log.info("Waiting until the mails have left the Outbox (Exchange lets 30 a minute go); the settle "
                          "time starts then")
            if self.deferrable:
                from airflow_graph_mail.triggers.mailbox import GraphOutboxTrigger

                self.defer(trigger=GraphOutboxTrigger(graph_mail_conn_id=self.graph_mail_conn_id, sender=self.sender,
                                                      keys=keys, poke_interval=self.poke_interval),
                           method_name="outbox_left")
            while waiting(client, keys, self.sender):
                time.sleep(self.poke_interval)
        self.log.info("The mails have left the Outbox")

    def outbox_left(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Back from the triggerer: the mails have left the Outbox (or the wait failed)."""
        if isinstance(event, dict) and event.get("status") == "error":
            raise GraphConfigError(f"waiting for the mails to leave the Outbox failed: {event.get('error')}") \
                if event.get("permanent") else RuntimeError(f"waiting for the Outbox failed: {event.get('error')}")
        self.log.info("The mails have left the Outbox")
        return self.settle_then_report(context)

    def settle_then_report(self, context: Context) -> dict[str, Any]:
        seconds = self.settle.total_seconds()
        if seconds > 0:
            self.log.info("Waiting %s for non-delivery reports", self.settle)
            if self.deferrable:
                self.defer(trigger=_time_delta_trigger(self.settle), method_name="execute_complete")
            time.sleep(seconds)
        return self._report(context, self._sent(context))

    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        return self._report(context, self._sent(context))  # a new process: read the upstream outcomes again

    # -- what the upstream tasks sent -------------------------------------------------------------

    def _task_ids(self) -> list[str]:
        return [self.sent_by] if isinstance(self.sent_by, str) else list(self.sent_by)

    def _sent(self, context: Context) -> list[_Sent]:
        """Every upstream outcome, with the task it came from and the ref its NDR will carry (as the sender
        computed it: the ref is keyed by a secret this task need not know)."""
        sent: list[_Sent] = []
        for task_id in self._task_ids():
            outcomes = context["ti"].xcom_pull(task_ids=task_id, key=OUTCOMES_KEY)
            if outcomes is None:
                raise GraphConfigError(f"sent_by: task {task_id!r} pushed no '{OUTCOMES_KEY}' XCom; name a task that "
                                       "sends mail (GraphSendMailOperator, GraphMailMergeOperator, "
                                       "GraphSendDraftOperator, GraphDraftSentSensor) and that ran before this one")
            try:
                sent.extend(_Sent(task_id, Outcome.from_dict(outcome)) for outcome in outcomes)
            except (TypeError, KeyError, ValueError, AttributeError) as err:
                raise GraphConfigError(f"sent_by: task {task_id!r} pushed '{OUTCOMES_KEY}' that are not mail "
                                       f"outcomes ({type(err).__name__}: {err}); name a task that sends mail") \
                    from None
        unmatched = [s for s in sent if s.outcome.status in _WENT_OUT and not s.outcome.ref]
        if unmatched:
            raise GraphConfigError(f"sent_by: {len(unmatched)} mail(s) of {unmatched[0].task_id!r} carry no bounce "
                                   "ref (sent with idempotency_key=False, or by a version of this provider that "
                                   "pushed none), so no bounce can be tied to them; turn keys on")
        return sent

    # -- the report --------------------------------------------------------------------------------

    def _report(self, context: Context, sent: list[_Sent]) -> dict[str, Any]:
        # a failed mail never went, so no report can be about it
        by_ref = {s.outcome.ref: s for s in sent if s.outcome.ref and s.outcome.status is not Status.FAILED}
        since = _run_start(context)
        query = NDR_FILTER + (f" and receivedDateTime ge {since}" if since else "")
        bounces: list[dict] = []
        seen: set[tuple] = set()
        with fail_without_retries():
            hook = GraphMailHook(graph_mail_conn_id=self.graph_mail_conn_id)
            reports = list(hook.list_messages(sender=self.sender, folder="inbox", filter=query,
                                              select=("id", "receivedDateTime", "internetMessageId")))
            for ndr in reports:
                for bounce in self._bounces_of(ndr, hook.get_mime(ndr["id"], sender=self.sender), by_ref):
                    mark = (bounce["task_id"], bounce["position"], bounce.pop("_key"))
                    if mark not in seen:  # Exchange may deliver a report twice; one entry per recipient
                        seen.add(mark)
                        bounces.append(bounce)
        mails = sum(1 for s in sent if s.outcome.status in _WENT_OUT)
        self.log.info("Read %d non-delivery report(s) since %s: %d bounce(s) of %d mail(s) sent", len(reports),
                      since or "ever", len(bounces), mails)
        for bounce in bounces:
            if bounce["kind"] == "rate_limited":
                self.log.warning("Rate limited, not a bad address: %s (%s %s) from %s[%s] %r: %s", bounce["address"],
                                 bounce["status"], bounce["meaning"], bounce["task_id"], bounce["position"],
                                 bounce["subject"], bounce["advice"])
            else:
                self.log.warning("Bounced: %s (%s %s) from %s[%s] %r", bounce["address"], bounce["status"],
                                 bounce["meaning"], bounce["task_id"], bounce["position"], bounce["subject"])
        resend = _resendable(bounces)
        if resend:
            self.log.warning("%d mail(s) can be sent again later (the sender's limits refused them, not their "
                             "addresses): %s", len(resend), ", ".join(f"{r['task_id']}[{r['position']}]"
                                                                      for r in resend[:20]))
        ti = context["ti"]
        ti.xcom_push(key=BOUNCES_KEY, value=bounces)
        ti.xcom_push(key=OUTCOMES_KEY, value=_with_bounces(sent, bounces))
        bounced = len({(b["task_id"], b["position"]) for b in bounces})
        self._judge(bounces, bounced, mails)
        return {"mails": mails, "bounced_mails": bounced, "bounces": bounces,
                "rate_limited": sum(1 for b in bounces if b["kind"] == "rate_limited"), "resend": resend}

    def _bounces_of(self, ndr: dict, mime: bytes, by_ref: dict[str, _Sent]) -> list[dict]:
        """The bounces one report proves, read as far as it can be; what it cannot be read for, or names
        beyond its mail's recipients, is logged naming the report."""
        name = f"{ndr['id']} ({str(ndr.get('internetMessageId') or '')!r})"  # the Message-ID is the sender's text
        try:
            report = read_report(mime)
        except UnreadableReportError as err:
            self.log.warning("Skipped non-delivery report %s: %s", name, err)
            return []
        if report is None:
            self.log.warning("Skipped non-delivery report %s: not a delivery status notification (multipart/report "
                             "with a delivery-status part, RFC 6522); a bounce written for people only is not read",
                             name)
            return []
        origin = by_ref.get(report.ref)
        if origin is None and report.ref:
            return []  # a report about some other mail
        for problem in report.problems:
            self.log.warning("Non-delivery report %s: %s", name, problem)
        if origin is None:
            return []
        task_id, mail = origin
        where = f"{task_id}[{mail.position}]"
        counted, strangers = report.recipients_bounced([*mail.to, *mail.cc, *mail.bcc])
        if strangers:
            shown = ", ".join(repr(a[:100]) for a in strangers[:5]) + \
                (f" and {len(strangers) - 5} more" if len(strangers) > 5 else "")
            which = "which was not a recipient" if len(strangers) == 1 else "which were not recipients"
            self.log.warning("Non-delivery report %s names %s, %s of %s; not counted", name, shown, which, where)
        return [{"address": address, "status": bounce.status, "meaning": bounce.meaning, "kind": bounce.kind,
                 "advice": bounce.advice, "diagnostic": bounce.diagnostic, "task_id": task_id,
                 "position": mail.position, "key": mail.key, "subject": mail.subject,
                 "reported_at": ndr.get("receivedDateTime"), "_key": address_key(address)}
                for address, bounce in counted]

    def _judge(self, bounces: list[dict], bounced: int, mails: int) -> None:
        """fail_on_bounce: True (any), False (never) or the share of mails with a bounce that is too many."""
        if not bounced or self.fail_on_bounce is False:
            return
        share = bounced / mails if mails else 1.0
        if self.fail_on_bounce is True or share > self.fail_on_bounce:
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
    return (start - timedelta(minutes=1)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resendable(bounces: list[dict]) -> list[dict]:
    """The mails (a task's row) that bounced for the sender's limits: their task, position, key, subject, the
    addresses refused and how to get them through."""
    rows: dict[tuple, dict] = {}
    for bounce in bounces:
        if bounce["kind"] == "rate_limited":
            row = rows.setdefault((bounce["task_id"], bounce["position"]), {
                "task_id": bounce["task_id"], "position": bounce["position"], "key": bounce["key"],
                "subject": bounce["subject"], "status": bounce["status"], "advice": bounce["advice"],
                "addresses": []})
            row["addresses"].append(bounce["address"])
    return list(rows.values())


def _with_bounces(sent: list[_Sent], bounces: list[dict]) -> list[dict]:
    """The upstream outcomes, each with its task and the bounces of its mail (an empty list when it had none)."""
    found: dict[tuple, list[dict]] = {}
    for bounce in bounces:
        found.setdefault((bounce["task_id"], bounce["position"]), []).append(
            {k: bounce[k] for k in ("address", "status", "meaning", "kind", "advice", "diagnostic")})
    return [{**s.outcome.as_dict(), "task_id": s.task_id, "bounces": found.get((s.task_id, s.outcome.position), [])}
            for s in sent]
