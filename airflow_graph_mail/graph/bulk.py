"""Many messages from one mailbox, sent concurrently up to the mailbox's limit, each with its own outcome.

Every message is checked before any is sent (a bad one fails the batch, nothing half-sent); then each
goes through the same exactly-once send as a single one, the client's pacer keeping the requests within
Graph's per-mailbox concurrency and backing off together when throttled.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from airflow_graph_mail.errors import GraphConfigError, GraphMailError, MessageValidationError, OutcomeUnknownError
from airflow_graph_mail.graph.client import GraphMailClient
from airflow_graph_mail.outcomes import Outcome, Status

log = logging.getLogger(__name__)


def send_many(client: GraphMailClient, messages: list, *, keys: list[str | None] | None = None,
              sender: str | None = None, save_to_sent_items: bool = True, check_first: bool = False,
              concurrency: int | None = None, label: str = "message {position}: {field}") -> list[Outcome]:
    """Send every message (a failure does not stop the others); outcomes in the messages' order."""
    keys = list(keys) if keys is not None else [None] * len(messages)
    if len(keys) != len(messages):
        raise GraphConfigError(f"keys: {len(keys)} keys for {len(messages)} messages")
    client.call(sender)  # the mailbox is checked before anything else
    prepared = []
    for position, message in enumerate(messages):  # bad input fails the batch before anything is sent
        try:
            prepared.append(client.prepare(message))
        except MessageValidationError as err:
            raise MessageValidationError(label.format(position=position, field=err.field), err.problem) from None
    workers = max(1, min(concurrency or client.concurrency, client.concurrency, len(messages) or 1))

    def send(position: int) -> Outcome:
        message, key = prepared[position], keys[position]
        to, subject = message.summary()
        try:
            status = client.send_mail(message, sender=sender, save_to_sent_items=save_to_sent_items,
                                      idempotency_key=key, check_first=check_first)
            return Outcome(position, key, to, subject, status)
        except OutcomeUnknownError as err:
            log.error("Message %d (%r) to %s: outcome unknown: %s", position, key, ", ".join(to), err)
            return Outcome(position, key, to, subject, Status.UNKNOWN, str(err))
        except GraphMailError as err:
            log.error("Message %d (%r) to %s failed: %s", position, key, ", ".join(to), err)
            return Outcome(position, key, to, subject, Status.FAILED, str(err), permanent=err.permanent)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph-mail") as pool:
        return list(pool.map(send, range(len(messages))))
