"""A batch planned against the mailbox's sending limits before its first send: what fits, and when each mail
leaves.

Exchange Online counts every recipient a mailbox sent in the last 24 hours (a sliding window, 10,000) and lets
30 messages a minute leave its Outbox; a message that would take the window past its limit bounces whole with
5.1.90 when it leaves (Microsoft, "Troubleshoot outbound sending limits in Exchange Online"). So a batch is
planned from: the recipients of its messages; those the mailbox sent in the last 24 hours, read from Sent Items
by the server's clock (the Date of Graph's answers, never ours); those of the mail still waiting (in the Outbox,
or in Drafts no longer a draft); the window as it slides; and the message rate.

Sent Items is a floor, not a meter: mail sent with ``save_to_sent_items=False``, or by another app or a person
who does not keep copies, is not there but counts; mail a delegate sent counts against the delegate. The plan
says what it read. Reading needs Mail.ReadBasic.All (or Mail.Read, Mail.ReadWrite): without it the plan counts
the batch alone and says so. Whether Graph's list fills ``bccRecipients`` of sent mail is not documented
(Exchange keeps Bcc on the sender's copy); where it does not, Bcc recipients are not counted.
"""

from __future__ import annotations

import collections
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from airflow_graph_mail.errors import AccessDeniedError
from airflow_graph_mail.graph.limits import MailboxLimits

DAY = 24 * 3600.0
MINUTE = 60.0
_SELECT = ("sentDateTime", "toRecipients", "ccRecipients", "bccRecipients")


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def shown(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def recipients_of(message: dict) -> int:
    """A message's recipients as Exchange counts them: to, cc and bcc, each address once."""
    return len({str((r.get("emailAddress") or {}).get("address", "")).lower()
                for name in ("toRecipients", "ccRecipients", "bccRecipients") for r in message.get(name) or []
                if isinstance(r, dict)})


@dataclass
class Usage:
    """What the mailbox has spent, as Graph shows it: ``sent`` (sentDateTime, recipients) in the last 24 hours,
    oldest first, and ``queued`` (recipients of each message still waiting), both None when the app may not read
    them (``problem`` says why); ``now`` the server's time."""

    mailbox: str
    now: float
    sent: list[tuple[float, int]] | None
    queued: list[int] | None
    problem: str = ""


def read_usage(client, sender: str | None = None) -> Usage:
    """The mailbox's last 24 hours and its waiting mail, through the client (every page, retried as any read)."""
    call = client.call(sender)
    mailbox = call.mailbox
    try:
        queued = [recipients_of(m) for m in client.list_messages(sender=mailbox, folder="outbox", select=_SELECT[1:],
                                                                 page_size=1000)]
        queued += [recipients_of(m) for m in client.list_messages(sender=mailbox, folder="drafts",
                                                                  filter="isDraft eq false", select=_SELECT[1:],
                                                                  page_size=1000)]
        now = server_now(client)
        sent = sorted((epoch(m["sentDateTime"]), recipients_of(m)) for m in client.list_messages(
            sender=mailbox, folder="sentitems", filter=f"sentDateTime ge {iso(now - DAY)}", select=_SELECT,
            page_size=1000) if m.get("sentDateTime"))
    except AccessDeniedError as err:
        return Usage(mailbox, server_now(client), None, None, problem=(
            f"the app may not read {mailbox}'s Sent Items ({err.status} {err.code}), so this plan counts the batch "
            "alone, while Exchange also counts every recipient the mailbox sent in the last 24 hours: grant "
            "Mail.ReadBasic.All (or Mail.Read, Mail.ReadWrite) to plan against them"))
    return Usage(mailbox, now, sent, queued)


def server_now(client) -> float:
    """The server's time from its latest answer (ours only before any answer)."""
    return client.transport.server_time() or time.time()


@dataclass
class Plan:
    """``leaves``: when each message of the batch would leave the Outbox (epoch, the server's clock), in order;
    the first ``fitting`` go now, the rest wait for the window. ``impossible``: the position of a message with
    more recipients than the mailbox may send in 24 hours, if any."""

    usage: Usage
    limits: MailboxLimits
    counts: Sequence[int]
    leaves: list[float] = field(default_factory=list)
    fitting: int = 0
    impossible: int | None = None

    @property
    def messages(self) -> int:
        return len(self.counts)

    @property
    def recipients(self) -> int:
        return sum(self.counts)

    @property
    def sent(self) -> int | None:
        return None if self.usage.sent is None else sum(n for _, n in self.usage.sent)

    @property
    def queued_recipients(self) -> int:
        return sum(self.usage.queued or ())

    @property
    def remaining(self) -> int:
        """Recipients the mailbox may still send to now."""
        return max(0, self.limits.recipients_per_day - (self.sent or 0) - self.queued_recipients)

    @property
    def fits(self) -> bool:
        return self.fitting == self.messages and self.impossible is None

    def leaves_at(self, position: int) -> str:
        return iso(self.leaves[position]) if position < len(self.leaves) else ""

    def describe(self) -> str:
        """The plan in words, with every number it rests on."""
        usage, limits = self.usage, self.limits
        spent = (f"it sent to {self.sent:,} recipient(s) in the last 24 hours and {self.queued_recipients:,} wait in "
                 f"its Outbox" if usage.sent is not None else usage.problem)
        text = (f"{self.messages:,} message(s) to {self.recipients:,} recipient(s) from {usage.mailbox} (server time "
                f"{shown(usage.now)}): the mailbox may send to {limits.recipients_per_day:,} recipients per 24 hours; "
                f"{spent}; {self.remaining:,} left now.")
        if self.impossible is not None:
            return text + (f" Message {self.impossible} alone has {self.counts[self.impossible]:,} recipients, more "
                           "than the mailbox may send to in 24 hours: split it.")
        if self.fitting:
            last = self.leaves[self.fitting - 1]
            text += (f" {self.fitting:,} message(s) fit now and leave the Outbox at {limits.messages_per_minute} a "
                     f"minute, the last about {shown(last)} (~{_span(last - usage.now)}).")
        if not self.fits:
            rest = f"The other {self.messages - self.fitting:,}" if self.fitting else f"All {self.messages:,}"
            text += (f" {rest} must wait for the 24-hour window to free: the first about "
                     f"{shown(self.leaves[self.fitting])}, the last about {shown(self.leaves[-1])}.")
        return text

    def as_dict(self) -> dict:
        """Plain JSON types (XCom, a check_only run's return value)."""
        fitting_last = self.leaves[self.fitting - 1] if self.fitting else None
        return {"mailbox": self.usage.mailbox, "server_time": iso(self.usage.now), "messages": self.messages,
                "recipients": self.recipients, "recipients_per_day": self.limits.recipients_per_day,
                "messages_per_minute": self.limits.messages_per_minute, "sent_last_24h": self.sent,
                "queued_recipients": self.queued_recipients if self.usage.queued is not None else None,
                "remaining": self.remaining, "fits": self.fits, "fitting": self.fitting,
                "fitting_leave_by": iso(fitting_last) if fitting_last else None,
                "all_leave_by": iso(self.leaves[-1]) if self.leaves and self.impossible is None else None,
                "read_problem": self.usage.problem, "text": self.describe()}


def plan(usage: Usage, counts: Sequence[int], limits: MailboxLimits) -> Plan:
    """When each message would leave: in order, at most ``messages_per_minute`` in any minute, and each only when
    the mailbox's recipients in the 24 hours before it leaves, itself included, stay within the limit (the window
    slides: room comes back as earlier mail turns 24 hours old). The messages that leave without waiting for the
    window fit now; the first that waits, and all after it, do not."""
    result = Plan(usage, limits, counts)
    day, rate, now = limits.recipients_per_day, limits.messages_per_minute, usage.now
    window = collections.deque((t, n) for t, n in usage.sent or () if t > now - DAY)
    used = sum(n for _, n in window)
    recent = collections.deque(t for t, _ in window if t > now - MINUTE)
    last = now

    def leave(count: int, hold: bool) -> tuple[float, bool]:
        nonlocal used, last
        when, waited = last, False
        while True:
            while recent and recent[0] <= when - MINUTE:
                recent.popleft()
            if len(recent) >= rate:
                when = max(when, recent[-rate] + MINUTE)
            while window and window[0][0] <= when - DAY:
                used -= window.popleft()[1]
            if not hold or used + count <= day or not window:
                break
            when, waited = window[0][0] + DAY, True
        recent.append(when)
        window.append((when, count))
        used += count
        last = when
        return when, waited

    for count in usage.queued or ():  # waiting mail leaves first, whatever the window says
        leave(count, hold=False)
    fitting = None
    for position, count in enumerate(counts):
        if count > day:
            result.impossible = position
            break
        when, waited = leave(count, hold=True)
        result.leaves.append(when)
        if waited and fitting is None:
            fitting = position
    result.fitting = len(result.leaves) if fitting is None else fitting
    return result


def _span(seconds: float) -> str:
    minutes = max(0.0, seconds) / 60
    if minutes < 1:
        return "under a minute"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"
