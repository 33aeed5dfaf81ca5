"""Many messages from one mailbox, sent concurrently up to the mailbox's limit, each with its own outcome.

The client's pacer keeps the requests within Graph's per-mailbox concurrency and backs off together
when throttled; every message goes through the same exactly-once send as a single one.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from airflow_graph_mail.graph.client import GraphMailClient
from airflow_graph_mail.graph.errors import GraphMailError
from airflow_graph_mail.mail.errors import MessageValidationError
from airflow_graph_mail.mail.message import graph_message

log = logging.getLogger(__name__)

FAILED = "failed"


class BatchFailedError(GraphMailError):
    """Some messages of a batch were not sent; ``failed`` holds their outcomes."""

    def __init__(self, failed: list[dict], total: int, shown: int = 10):
        self.failed = failed
        lines = [f"#{o['position']} to {', '.join(o['to']) or '?'} (key {o['key']!r}): {o['error']}"
                 for o in failed[:shown]]
        more = f"\n... and {len(failed) - shown} more" if len(failed) > shown else ""
        super().__init__(f"{len(failed)} of {total} message(s) failed; the others were sent, and a retry sends "
                         "only the failed ones (with idempotency keys on):\n" + "\n".join(lines) + more)


@dataclass
class Outcome:
    """What happened to one message: ``status`` is "sent", "already_sent" or "failed" (with ``error``)."""

    position: int
    key: str | None
    to: list[str]
    subject: str
    status: str
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _summary(message) -> tuple[list[str], str]:
    if isinstance(message, dict):
        subject = next((v for k, v in message.items() if k.lower() == "subject"), "")
        to = next((v for k, v in message.items() if k.lower() == "torecipients"), []) or []
        return [r.get("emailAddress", {}).get("address", "") for r in to if isinstance(r, dict)], str(subject)
    return [r.address for r in message.to], message.subject


def send_many(client: GraphMailClient, messages: list, *, keys: list[str | None] | None = None,
              sender: str | None = None, save_to_sent_items: bool = True, check_first: bool = False,
              concurrency: int | None = None) -> list[Outcome]:
    """Send every message (a failure does not stop the others); outcomes in the messages' order."""
    keys = list(keys) if keys is not None else [None] * len(messages)
    if len(keys) != len(messages):
        raise ValueError(f"keys: {len(keys)} keys for {len(messages)} messages")
    for position, message in enumerate(messages):  # bad input fails the batch before anything is sent
        try:
            if isinstance(message, dict):
                graph_message(message, require_recipients=True)
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
        except (GraphMailError, OSError, ValueError) as err:  # OSError: requests' network errors
            log.error("Message %d (%r) to %s failed: %s", position, key, ", ".join(to), err)
            return Outcome(position, key, to, subject, FAILED, str(err))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph-mail") as pool:
        return list(pool.map(send, range(len(messages))))
