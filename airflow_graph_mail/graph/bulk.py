"""Many messages from one mailbox, sent concurrently up to the mailbox's limit, each with its own outcome.

Every message is checked before any is sent (a bad one fails the batch, nothing half-sent); then each
goes through the same exactly-once send as a single one, the client's pacer keeping the requests within
Graph's per-mailbox concurrency and backing off together when throttled.

``messages`` is any sequence: a list, or one that builds each message when asked (a mail merge's rows are
rendered twice, once here to check and once to send, rather than holding 100,000 rendered mails in memory).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from airflow_graph_mail.errors import GraphConfigError, GraphMailError, MessageValidationError, OutcomeUnknownError
from airflow_graph_mail.graph.client import GraphMailClient
from airflow_graph_mail.outcomes import Outcome, Status

log = logging.getLogger(__name__)


def check_all(client: GraphMailClient, messages: Sequence, label: str = "message {position}: {field}") -> int:
    """Check every message as sending would (recipients, size, allow-list), keeping none of them; the first
    bad one raises, its field named through ``label``. Returns how many were checked."""
    started = time.monotonic()
    for position in range(len(messages)):
        try:
            client.prepare(messages[position])
        except MessageValidationError as err:
            raise MessageValidationError(label.format(position=position, field=err.field), err.problem) from None
    log.info("Checked %d message(s) in %.1f s", len(messages), time.monotonic() - started)
    return len(messages)


def send_many(client: GraphMailClient, messages: Sequence, *, keys: Sequence[str | None] | None = None,
              sender: str | None = None, save_to_sent_items: bool = True, check_first: bool = False,
              concurrency: int | None = None, label: str = "message {position}: {field}") -> list[Outcome]:
    """Send every message (a failure does not stop the others); outcomes in the messages' order."""
    keys = list(keys) if keys is not None else [None] * len(messages)
    if len(keys) != len(messages):
        raise GraphConfigError(f"keys: {len(keys)} keys for {len(messages)} messages")
    client.call(sender)  # the mailbox is checked before anything else
    check_all(client, messages, label)  # bad input fails the batch before anything is sent
    workers = max(1, min(concurrency or client.concurrency, client.concurrency, len(messages) or 1))

    def send(position: int) -> Outcome:
        key = keys[position]
        try:
            message = client.prepare(messages[position])
        except GraphMailError as err:  # built differently than when checked (a template reading the clock)
            log.error("Message %d (%r) failed its check when sent: %s", position, key, err)
            return Outcome(position, key, [], "", Status.FAILED, str(err), permanent=True)
        ref = client.ref_for(key)
        to = ", ".join(r.address for r in message.to)
        try:
            status = client.send_mail(message, sender=sender, save_to_sent_items=save_to_sent_items,
                                      idempotency_key=key, check_first=check_first)
        except OutcomeUnknownError as err:
            log.error("Message %d (%r) to %s: outcome unknown: %s", position, key, to, err)
            return message.outcome(position, key, Status.UNKNOWN, str(err), ref=ref)
        except GraphMailError as err:
            log.error("Message %d (%r) to %s failed: %s", position, key, to, err)
            return message.outcome(position, key, Status.FAILED, str(err), permanent=err.permanent, ref=ref)
        return message.outcome(position, key, status, ref=ref)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph-mail") as pool:
        return list(pool.map(send, range(len(messages))))
