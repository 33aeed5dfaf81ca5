"""Many messages from one mailbox, planned against its sending limits, sent concurrently up to the mailbox's
limit, each with its own outcome.

Every message is checked before any is sent (a bad one fails the batch, nothing half-sent); then the batch is
planned (``graph.planning``): when it does not fit the mailbox's 24-hour window, it fails before the first send
naming the numbers and the choices, or with ``over_limit="defer"`` the messages that fit go and the rest come
back deferred, each with the time it is planned to leave. Each message goes through the same exactly-once send
as a single one, the client's pacer keeping the requests within Graph's per-mailbox concurrency.

``messages`` is any sequence: a list, or one that builds each message when asked (a mail merge's rows are
rendered twice, once here to check and once to send, rather than holding 100,000 rendered mails in memory).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from airflow_graph_mail.errors import (
    GraphConfigError,
    GraphMailError,
    MessageValidationError,
    OutcomeUnknownError,
    SendingLimitError,
)
from airflow_graph_mail.graph.client import GraphMailClient
from airflow_graph_mail.graph.limits import AT_MOST_ONCE
from airflow_graph_mail.graph.planning import Plan, iso, plan, read_usage, shown
from airflow_graph_mail.outcomes import Outcome, Status

log = logging.getLogger(__name__)

FAIL = "fail"  # a batch over the mailbox's window fails before its first send (the default)
DEFER = "defer"  # the messages that fit go; the rest come back DEFERRED, to be sent when the window frees
OVER_LIMIT = (FAIL, DEFER)


def check_all(client: GraphMailClient, messages: Sequence, label: str = "message {position}: {field}",
              first_position: int = 0) -> list[int]:
    """Check every message as sending would (recipients, size, the mailbox's recipients per message, the
    allow-list), keeping none of them; the first bad one raises, its field named through ``label`` (positions
    counted from ``first_position``). Returns each message's recipient count (what the 24-hour window counts)."""
    started = time.monotonic()
    counts = []
    for index in range(len(messages)):
        try:
            counts.append(client.prepare(messages[index]).recipient_count)
        except MessageValidationError as err:
            raise MessageValidationError(label.format(position=first_position + index, field=err.field),
                                         err.problem) from None
    log.info("Checked %d message(s) in %.1f s", len(messages), time.monotonic() - started)
    return counts


def plan_batch(client: GraphMailClient, counts: Sequence[int], sender: str | None = None) -> Plan:
    """The batch planned against what the mailbox spent (read from Sent Items and the Outbox)."""
    found = plan(read_usage(client, sender), counts, client.limits)
    if found.usage.problem:
        log.warning("Planning without the mailbox's last 24 hours: %s", found.usage.problem)
    log.info("Sending plan: %s", found.describe())
    return found


def too_much(found: Plan) -> SendingLimitError:
    """The error of a batch over the window: the numbers and the choices."""
    choices = ("over_limit='defer' (send the messages that fit now, wait without a worker slot until the window "
               f"has room, then go on: all would have left by about {shown(found.leaves[-1])}), " if found.leaves
               and found.impossible is None else "")
    return SendingLimitError(
        f"the batch does not fit the mailbox's sending limits: {found.describe()} Sending it all now "
        "would bounce the rest with 550 5.1.90 (Exchange Online's limit is per mailbox and cannot be raised). "
        f"Nothing was sent. Choose {choices}split the batch over days, or send parts from other mailboxes.", found)


def send_many(client: GraphMailClient, messages: Sequence, *, keys: Sequence[str | None] | None = None,
              sender: str | None = None, save_to_sent_items: bool = True, check_first: bool = False,
              concurrency: int | None = None, label: str = "message {position}: {field}",
              over_limit: str = FAIL, first_position: int = 0) -> list[Outcome]:
    """Send every message that fits the mailbox's window (a failure does not stop the others); outcomes in the
    messages' order. ``check_first`` (a retry) looks for each keyed message first, and plans without those found.
    ``first_position``: the position of the first message in a larger batch (a merge resumed after a wait), for
    labels and outcomes."""
    if over_limit not in OVER_LIMIT:
        raise GraphConfigError(f"over_limit: {over_limit!r}; use 'fail' (the default: a batch over the mailbox's "
                               "24-hour window fails before sending) or 'defer' (send what fits, the rest later)")
    keys = list(keys) if keys is not None else [None] * len(messages)
    if len(keys) != len(messages):
        raise GraphConfigError(f"keys: {len(keys)} keys for {len(messages)} messages")
    client.call(sender)  # the mailbox is checked before anything else
    counts = check_all(client, messages, label, first_position)  # bad input fails the batch before any send
    done: dict[int, Status] = {}
    looked: set[int] = set()
    if check_first:  # what an earlier attempt sent is neither sent again nor planned
        for position, key in enumerate(keys):
            if key and save_to_sent_items:
                looked.add(position)
                went = client.was_sent(key, sender=sender)
                if went or (went is None and client.delivery_guarantee == AT_MOST_ONCE):
                    done[position] = Status.ALREADY_SENT if went else Status.NOT_RESENT
        if done:
            log.info("%d of %d message(s) were sent by an earlier attempt (or are kept back); not sending them again",
                     len(done), len(messages))
    todo = [position for position in range(len(messages)) if position not in done]
    found = plan_batch(client, [counts[p] for p in todo], sender) if todo else None
    if found is not None and not found.fits and (over_limit == FAIL or found.impossible is not None):
        raise too_much(found)
    going = set(todo[:found.fitting]) if found is not None else set()
    planned = {position: found.leaves_at(n) for n, position in enumerate(todo)} if found is not None else {}
    workers = max(1, min(concurrency or client.concurrency, client.concurrency, len(going) or 1))

    def send(index: int) -> Outcome:
        outcome = send_one(index)
        outcome.position = first_position + index
        return outcome

    def send_one(position: int) -> Outcome:
        key = keys[position]
        try:
            message = client.prepare(messages[position])
        except GraphMailError as err:  # built differently than when checked (a template reading the clock)
            log.error("Message %d (%r) failed its check when sent: %s", position, key, err)
            return Outcome(position, key, [], "", Status.FAILED, str(err), permanent=True)
        ref = client.ref_for(key)
        if position in done:
            return message.outcome(position, key, done[position], ref=ref)
        if position not in going:
            return message.outcome(position, key, Status.DEFERRED, ref=ref, leaves_at=planned[position])
        to = ", ".join(r.address for r in message.to)
        try:
            status = client.send_mail(message, sender=sender, save_to_sent_items=save_to_sent_items,
                                      idempotency_key=key, check_first=check_first, looked_up=position in looked)
        except OutcomeUnknownError as err:
            log.error("Message %d (%r) to %s: outcome unknown: %s", position, key, to, err)
            return message.outcome(position, key, Status.UNKNOWN, str(err), ref=ref)
        except GraphMailError as err:
            log.error("Message %d (%r) to %s failed: %s", position, key, to, err)
            return message.outcome(position, key, Status.FAILED, str(err), permanent=err.permanent, ref=ref)
        accepted = client.transport.server_time()
        return message.outcome(position, key, status, ref=ref, accepted_at=iso(accepted) if accepted else "",
                               leaves_at=planned[position])

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph-mail") as pool:
        outcomes = list(pool.map(send, range(len(messages))))
    if going and found is not None:
        last = max(found.leaves[n] for n in range(found.fitting))
        log.info("%d message(s) accepted in %.1f s; Exchange lets them leave the Outbox at %d a minute, the last "
                 "about %s", len(going), time.monotonic() - started, client.limits.messages_per_minute, shown(last))
    return outcomes
