"""GraphDraftSentSensor: the review gate. Waits until a person sends (or discards) a draft in Outlook.

Importing this module stays cheap (no msal or requests): the client's stack loads when the hook connects, and
the trigger's module when the sensor defers.
"""

from __future__ import annotations

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

from airflow_graph_mail.airflow_face import DEFAULT_CONN_ID, SENT_KEY, check_options, push_outcomes, sent_outcome
from airflow_graph_mail.errors import GraphConfigError, GraphMailError
from airflow_graph_mail.hooks.graph_mail import GraphMailHook
from airflow_graph_mail.mail.review import SENT, WAITING, sent_summary
from airflow_graph_mail.outcomes import Status

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


class GraphDraftSentSensor(BaseSensorOperator):
    """Wait until the draft ``message_id`` has been sent by its reviewer, or discarded.

    Sent: the draft's immutable id (what GraphDraftOperator pushes as ``draft_id``) finds a message that is
    no longer a draft. Discarded: it finds a draft in Deleted Items, or nothing on three looks in a row (a
    replica may answer 404 once). An id Graph cannot read, an unknown mailbox or a refused permission fail
    the task, naming the id or the mailbox, whatever ``on_discard`` says. The reviewer may
    have changed the recipients and subject: the task returns (and pushes as XCom ``sent``) what was finally
    sent, and checks those recipients against the connection's ``allowed_recipient_domains``; a recipient
    outside them fails the task loudly (the mail has already gone).

    :param message_id: the draft's immutable id, e.g. ``"{{ ti.xcom_pull('make_draft', key='draft_id') }}"``.
        (templated)
    :param sender: the mailbox holding the draft; defaults to the connection's ``sender``. (templated)
    :param on_discard: "fail" (default) or "skip" when the reviewer discards the draft.
    :param deferrable: wait in the triggerer (no worker slot held while a person takes two days; each look
        is the same client call, run in a thread); default from ``[operators] default_deferrable``.
        Otherwise ``mode="reschedule"`` or ``"poke"``, ``poke_interval`` and ``timeout`` as for any sensor.
    :param graph_mail_conn_id: the Airflow connection to use.
    """

    template_fields: Sequence[str] = ("message_id", "sender")
    ui_color = "#cfe4f7"

    def __init__(self, *, message_id: str, sender: str | None = None, on_discard: str = "fail",
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 graph_mail_conn_id: str = DEFAULT_CONN_ID, **kwargs) -> None:
        kwargs.setdefault("poke_interval", 60)
        super().__init__(**kwargs)
        check_options(on_discard=(on_discard, (str,)), deferrable=(deferrable, (bool,)),
                      graph_mail_conn_id=(graph_mail_conn_id, (str,)))
        if on_discard not in ("fail", "skip"):
            raise GraphConfigError(f"on_discard: {on_discard!r} is not 'fail' or 'skip'")
        self.message_id = message_id
        self.sender = sender
        self.on_discard = on_discard
        self.deferrable = deferrable
        self.graph_mail_conn_id = graph_mail_conn_id

    # -- poke and reschedule modes ------------------------------------------------------------------

    def poke(self, context: Context) -> bool:
        from airflow_graph_mail.graph.review import GONE, DraftReview, confirm_delay, failure_text  # the client's

        review = None
        try:
            review = DraftReview(self._hook().client, self.message_id, self.sender)
            look = review.look()
            while look.state == GONE:  # confirm before deciding: a replica may not have seen the draft yet
                time.sleep(confirm_delay(float(self.poke_interval)))
                look = review.look()
            # A regular id given: the next pokes, and the trigger it defers to, go on by the immutable id.
            self.message_id = review.message_id
        except GraphMailError as err:
            if not err.permanent:  # throttling, 5xx, no answer (after the client's retries): the task's retries
                raise
            raise AirflowFailException(failure_text(err, review)) from err
        if look.state == WAITING:
            self.log.info("Draft %s is still waiting for its reviewer", self.message_id)
            return False
        if look.state == SENT:
            self._sent(context, sent_summary(look.message or {}), review.client)
            return True
        self._discarded("deleted" if look.message is None else "moved to Deleted Items")
        return False  # pragma: no cover - _discarded raises

    def execute(self, context: Context) -> Any:
        self.sent_message: dict | None = None
        if not self.deferrable:
            super().execute(context)
            return self.sent_message
        if self.poke(context):  # already decided: no need to defer
            return self.sent_message
        from airflow_graph_mail.triggers.graph_mail import GraphDraftSentTrigger  # airflow.triggers, asyncio

        deadline = time.time() + float(self.timeout) if self.timeout else None
        self.defer(trigger=GraphDraftSentTrigger(graph_mail_conn_id=self.graph_mail_conn_id, message_id=self.message_id,
                                                 sender=self.sender, poke_interval=float(self.poke_interval),
                                                 deadline=deadline),
                   method_name="execute_complete")
        return None  # not reached: defer() raises

    # -- deferrable: the trigger's event ------------------------------------------------------------

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        status = (event or {}).get("status")
        if status == "sent":
            return self._sent(context, event["message"], self._hook().client)
        if status == "discarded":
            self._discarded(event.get("how", "discarded"))
        if status == "timeout":
            raise AirflowSensorTimeout(f"Draft {self.message_id} was neither sent nor discarded within "
                                       f"{self.timeout}s")
        error = (event or {}).get("error", event)
        if (event or {}).get("permanent"):
            raise AirflowFailException(error)
        raise AirflowException(f"Waiting for draft {self.message_id} failed: {error}")

    # -- the outcome --------------------------------------------------------------------------------

    def _hook(self) -> GraphMailHook:
        return GraphMailHook(graph_mail_conn_id=self.graph_mail_conn_id)

    def _sent(self, context: Context, sent: dict, client) -> dict:
        """Push what was sent (and one outcome, for GraphBounceReportOperator); check the final recipients."""
        self.sent_message = sent
        context["ti"].xcom_push(key=SENT_KEY, value=sent)
        push_outcomes(context, [sent_outcome(sent, Status.SENT)])
        recipients = [*sent["to"], *sent["cc"], *sent["bcc"]]
        self.log.info("The reviewer sent draft %s at %s: %r to %s", self.message_id, sent["sent_at"],
                      sent["subject"], ", ".join(recipients))
        allowed = client.allowed_recipients
        outside = [a for a in recipients if allowed is not None and not allowed.allows(a)]
        if outside:
            text = (f"The reviewer SENT draft {self.message_id} to {', '.join(outside)}, outside the connection's "
                    f"allowed_recipient_domains ({allowed.listed}). The mail has already gone: tell the recipients "
                    "and the data owner.")
            self.log.error(text)
            raise AirflowFailException(text)
        return sent

    def _discarded(self, how: str) -> None:
        text = f"The reviewer discarded draft {self.message_id} ({how}): nothing was sent"
        if self.on_discard == "skip":
            raise AirflowSkipException(text)
        raise AirflowFailException(text)
