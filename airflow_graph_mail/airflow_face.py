"""What the Airflow face (operators, sensors, triggers, notifiers, the e-mail backend) shares: the default
connection, the XCom keys tasks hand each other, the check of arguments that are not templated, and how an
error a retry cannot fix fails a task. Templated fields are rendered by ``rendering.py`` beside it.

Cheap to import, like the operator modules that import it: Airflow's compat layer and our error tree only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_graph_mail.errors import GraphConfigError, GraphMailError
from airflow_graph_mail.outcomes import Outcome, Status

DEFAULT_CONN_ID = "graph_mail_default"

# XCom keys. Each mail a task sent (position, key, ref, to, cc, bcc, subject, status): pushed by every task
# that sends (GraphSendMailOperator, GraphSendDraftOperator, GraphMailMergeOperator, GraphDraftSentSensor),
# read by GraphBounceReportOperator, which pushes them again with their bounces.
OUTCOMES_KEY = "outcomes"
DRAFT_ID_KEY = "draft_id"  # GraphDraftOperator: the draft's immutable id
WEB_LINK_KEY = "web_link"  # GraphDraftOperator: the draft in Outlook on the web
SENT_KEY = "sent"  # GraphDraftSentSensor: what the reviewer finally sent
BOUNCES_KEY = "bounces"  # GraphBounceReportOperator: one entry per bounced recipient
# Inbound mail. GraphMailSensor returns the summaries of the mail it took (``mail.inbound.summarize``) and
# pushes their ids; GraphSaveAttachmentsOperator returns the paths it wrote and pushes what each file is.
MESSAGE_IDS_KEY = "message_ids"
SAVED_KEY = "saved"

_NOT_RETRIED = " (not retried: a retry cannot fix this)"


def check_options(**options) -> None:
    """Task arguments that are not templated, checked when the DAG is parsed: ``name=(value, types)``; a
    wrong type is an error, never a silent default."""
    for name, (value, kinds) in options.items():
        if value is not None and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
            wanted = " or ".join(kind.__name__ for kind in kinds)
            raise GraphConfigError(f"{name}: expected {wanted}, got {value!r}")


def fail_now(text: str) -> AirflowFailException:
    """The exception that fails a task at once, without using its retries: raise it from the cause."""
    return AirflowFailException(text + _NOT_RETRIED)


@contextmanager
def fail_without_retries() -> Iterator[None]:
    """A permanent GraphMailError (bad input or configuration, a refused sign-in, a 403: wrong however often
    the task runs) fails the task at once, the typed error as the cause; the others (throttling, 5xx, lost
    answers, which may pass) keep the task's retries, and a retry of ours never sends twice."""
    try:
        yield
    except GraphMailError as err:
        if not err.permanent:
            raise
        raise fail_now(f"{type(err).__name__}: {err}") from err


def retried(context) -> bool:
    """Whether this is a retry of the task: an earlier try may have done the work already."""
    return (context["ti"].try_number or 1) > 1


def push_outcomes(context, outcomes: list[Outcome]) -> None:
    """The mails a task sent, as GraphBounceReportOperator reads them."""
    context["ti"].xcom_push(key=OUTCOMES_KEY, value=[outcome.as_dict() for outcome in outcomes])


def sent_outcome(sent: dict, status: Status) -> Outcome:
    """The outcome of a mail read back from Sent Items (``mail.review.sent_summary``): a reviewed draft."""
    return Outcome(0, None, sent["to"], sent["subject"], status, cc=sent["cc"], bcc=sent["bcc"], ref=sent["ref"])
