"""Many messages from one mailbox, sent concurrently up to the mailbox's limit, each with its own outcome.

The client's pacer keeps the requests within Graph's per-mailbox concurrency and backs off together
when throttled; every message goes through the same exactly-once send as a single one.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from airflow_graph_mail.errors import GraphConfigError, GraphMailError, MessageValidationError, OutcomeUnknownError
from airflow_graph_mail.graph.client import GraphMailClient
from airflow_graph_mail.mail.graph_shape import graph_document, summary

log = logging.getLogger(__name__)

FAILED = "failed"
# The answer was lost and the budget spent: the mail may have gone. A retried task looks it up first.
UNKNOWN = "unknown"


@dataclass
class Outcome:
    """What happened to one message: ``status`` is "sent", "already_sent", "failed" or "unknown" (with
    ``error``); ``permanent`` says that a retry cannot fix the failure."""

    position: int
    key: str | None
    to: list[str]
    subject: str
    status: str
    error: str = ""
    permanent: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _summary(message) -> tuple[list[str], str]:
    if isinstance(message, dict):
        return summary(message)
    return [r.address for r in message.to], message.subject


def send_many(client: GraphMailClient, messages: list, *, keys: list[str | None] | None = None,
              sender: str | None = None, save_to_sent_items: bool = True, check_first: bool = False,
              concurrency: int | None = None) -> list[Outcome]:
    """Send every message (a failure does not stop the others); outcomes in the messages' order."""
    keys = list(keys) if keys is not None else [None] * len(messages)
    if len(keys) != len(messages):
        raise GraphConfigError(f"keys: {len(keys)} keys for {len(messages)} messages")
    for position, message in enumerate(messages):  # bad input fails the batch before anything is sent
        try:
            if isinstance(message, dict):
                graph_document(message, require_recipients=True)
            else:
                message.require_recipients()
                client.check_size(message)
            client.check_recipients(message)
        except MessageValidationError as err:
            raise MessageValidationError(f"message {position}: {err.field}", err.problem) from None
    workers = max(1, min(concurrency or client.concurrency, client.concurrency, len(messages) or 1))

    def send(position: int) -> Outcome:
        message, key = messages[position], keys[position]
        to, subject = _summary(message)
        try:
            status = client.send_mail(message, sender=sender, save_to_sent_items=save_to_sent_items,
                                      idempotency_key=key, check_first=check_first)
            return Outcome(position, key, to, subject, status)
        except OutcomeUnknownError as err:
            log.error("Message %d (%r) to %s: outcome unknown: %s", position, key, ", ".join(to), err)
            return Outcome(position, key, to, subject, UNKNOWN, str(err))
        except (GraphMailError, OSError) as err:  # OSError: an attachment that could not be read
            log.error("Message %d (%r) to %s failed: %s", position, key, ", ".join(to), err)
            return Outcome(position, key, to, subject, FAILED, str(err),
                           permanent=bool(getattr(err, "permanent", False)))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph-mail") as pool:
        return list(pool.map(send, range(len(messages))))
