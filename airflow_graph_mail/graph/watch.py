"""The asset watcher's doorbell, one poll at a time: which mail to announce now, and the announcement itself.

At least once, cheap to repeat, never lost:
- the Announced mark is written in the mailbox BEFORE the event is handed to Airflow (Airflow keeps a
  yielded event in memory for a second or two before committing it; a triggerer killed then loses it);
- a mail announced but not claimed within ``lease`` seconds is announced again (the event was lost, or
  was committed but no run consumed it yet), up to ``max_attempts`` times; then it is dead-lettered
  (marked, logged, left alone);
- duplicates (two triggerers, a lease shorter than the way to a run) are harmless: the dispatcher starts
  one run per mail by its run id.

What lives here, in memory only, is a speed-up: the delta link (or the listing's watermark) and the mail
waiting for its lease. A restart starts with one bounded look back (``lookback`` seconds) and reads the marks
again. No Airflow here; the trigger runs each step in a thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from airflow_graph_mail.errors import ItemNotFoundError
from airflow_graph_mail.graph.inbound import MailboxReader, SyncReset
from airflow_graph_mail.mail.inbound import (
    Announcement,
    MailFilter,
    announced_property,
    claimed_property,
    epoch,
    property_value,
    run_id_for,
)

log = logging.getLogger(__name__)

# The plain listing looks back this far behind the newest mail it saw: mail that Exchange files a little late.
LISTING_OVERLAP = 300.0


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@dataclass
class Due:
    """A mail to announce now: what to tell, and which announcement this is."""

    summary: dict
    attempt: int


@dataclass
class MailWatch:
    reader: MailboxReader
    mail_filter: MailFilter
    scope: str
    lease: float = 600.0
    max_attempts: int = 20
    lookback: float = 86400.0
    use_delta: bool = True
    clock: object = time.time
    link: str | None = None  # the delta link of the last round
    watermark: float | None = None  # the listing's: the newest receivedDateTime seen
    recent: dict[str, float] = field(default_factory=dict)  # listing: ids seen within the overlap
    waiting: dict[str, float] = field(default_factory=dict)  # announced, unclaimed: id -> when the lease ends
    retry_now: set[str] = field(default_factory=set)  # an announcement failed half-way: again at once

    def _now(self) -> float:
        return self.clock()  # type: ignore[operator]

    def poll(self) -> list[Due]:
        """The mail to announce now, oldest first: new mail nobody announced, claimed or gave up on, and mail
        whose lease ended unclaimed."""
        now = self._now()
        due: list[Due] = []
        for message in self._arrived(now):
            if self.mail_filter.matches(message):
                self._consider(message["id"], now, due)
        for message_id, until in list(self.waiting.items()):
            if until <= now:
                del self.waiting[message_id]
                self._consider(message_id, now, due)
        return sorted(due, key=lambda d: epoch(d.summary["received"]))

    def _since(self, now: float) -> str:
        """Where a first round starts: ``lookback`` ago, or the filter's received_after when later."""
        return max(_utc(now - self.lookback), self.mail_filter.received_after or "")

    def _arrived(self, now: float) -> list[dict]:
        """What arrived since the last poll (a first poll: within ``lookback``)."""
        if self.use_delta:
            try:
                found, self.link = self.reader.delta(self.link, self._since(now))
            except SyncReset as reset:
                log.warning("Change tracking of %s restarts (%s): looking back %.0f s again; the marks keep "
                            "announced mail from being announced twice", self.reader.mailbox, reset, self.lookback)
                self.link = None
                found, self.link = self.reader.delta(None, self._since(now))
            return found
        since = self._since(now) if self.watermark is None else _utc(self.watermark - LISTING_OVERLAP)
        fresh = []
        for message in self.reader.listing(self.mail_filter, since):
            received = epoch(str(message.get("receivedDateTime") or ""))
            self.watermark = max(self.watermark or 0.0, received)
            if message["id"] not in self.recent:
                fresh.append(message)
            self.recent[message["id"]] = received
        horizon = (self.watermark or now) - LISTING_OVERLAP - 60
        self.recent = {k: v for k, v in self.recent.items() if v >= horizon}
        return fresh

    def _consider(self, message_id: str, now: float, due: list[Due]) -> None:
        """Read the mail's marks: announce it, wait for its lease, or leave it (claimed, dead-lettered, gone)."""
        try:
            message = self.reader.message(message_id, self.scope)
        except ItemNotFoundError:
            self.retry_now.discard(message_id)
            return  # moved away or deleted: nothing to announce
        if property_value(message, claimed_property(self.scope)):
            self.retry_now.discard(message_id)
            return
        announced = Announcement.parse(property_value(message, announced_property(self.scope)))
        if announced is not None and announced.dead:
            return
        if announced is not None and message_id not in self.retry_now and announced.at + self.lease > now:
            self.waiting[message_id] = announced.at + self.lease
            return
        summary = self.reader.summary(message, with_attachments=True)
        accepted, why = self.mail_filter.accepts(summary)
        if not accepted:
            log.info("Not announcing message %s: %s", message_id, why)
            return
        due.append(Due(summary, (announced.attempt if announced else 0) + 1))

    def announce(self, item: Due, conn_id: str) -> dict | None:
        """Write the Announced mark, then return the event's payload (None: dead-lettered instead). A failure
        to write leaves the mail to be announced again at the next poll."""
        message_id = item.summary["message_id"]
        now = self._now()
        self.retry_now.add(message_id)  # until the mark is written: due again at the next poll, lease or not
        self.waiting[message_id] = now
        if item.attempt > self.max_attempts:
            self.reader.set_properties(message_id, {announced_property(self.scope): Announcement(
                item.attempt - 1, now, dead=True).value()})
            self.retry_now.discard(message_id)
            del self.waiting[message_id]
            log.error("Message %s in %s was announced %d times and no run claimed it: dead-lettered (the mark "
                      "stays; start its run by hand with run id %s)", message_id, self.reader.mailbox,
                      self.max_attempts, run_id_for(self.reader.mailbox, message_id))
            return None
        self.reader.set_properties(message_id, {announced_property(self.scope): Announcement(item.attempt,
                                                                                           now).value()})
        self.retry_now.discard(message_id)
        self.waiting[message_id] = now + self.lease
        return {**item.summary, "watch": self.scope, "attempt": item.attempt, "graph_mail_conn_id": conn_id,
                "run_id": run_id_for(self.reader.mailbox, message_id)}
