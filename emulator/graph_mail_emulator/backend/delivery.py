"""Delivery: the one road a submitted message takes (sendMail, or a draft sent), as Exchange Online's transport
handles it behind Graph's 202.

Accepted mail leaves at the mailbox's message rate (30 a minute): what the rate allows goes at once, the rest
waits in the Outbox (``isDraft`` false) for a slot in a later minute, in the order it came. When a message
leaves it meets Exchange's sending limits: too many recipients for one message (550 5.5.3), the mailbox's
recipients in the last 24 hours (550 5.1.90: the whole message is refused until the window frees) and the
tenant's external recipients in the last 24 hours (TERRL: 550 5.7.233, or 5.7.232 for a trial tenant, for each
external recipient). Then it is filed in Sent Items, each recipient's Inbox gets a copy, and the recipients that
bounce get a non-delivery report in the sender's Inbox after the bounces' delay.

Mail waiting leaves when the backend's clock reaches its slot: on the clock's timer in real time, at once when a
test moves the clock (``clock.advance``), and before any request is answered (``drain``). Limits come from
``limits`` (the backend sets it); with ``Limits(exchange_limits=False)`` everything leaves at once, unlimited.

Entry points for the rest of the emulator: ``send_new``, ``send_draft``, ``drain``, ``budget``.
"""

from __future__ import annotations

import collections
import threading

from graph_mail_emulator.backend.bounces import SUBMISSION_QUOTA, Bounces, Failure, report
from graph_mail_emulator.backend.clock import Clock, Timer, iso
from graph_mail_emulator.backend.ledger import Ledger
from graph_mail_emulator.backend.limits import DAY, Limits
from graph_mail_emulator.backend.mime import build_eml
from graph_mail_emulator.backend.rules import check_sendable
from graph_mail_emulator.backend.store import IMMUTABLE_ID, Mailbox, MailStore, extended_properties
from graph_mail_emulator.errors import GraphError

MINUTE = 60.0


class Delivery:
    """``sends`` counts the sendMail requests accepted (a draft sent is not one)."""

    def __init__(self, store: MailStore, bounces: Bounces, clock: Clock, tenant_domain: str,
                 limits: Limits | None = None):
        self.store = store
        self.bounces = bounces
        self.clock = clock
        self.tenant_domain = tenant_domain  # the postmaster's, on non-delivery reports
        self.limits = limits or Limits()
        self.ledger = Ledger(store)
        self.sends = 0
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._reports: list[Timer] = []  # non-delivery reports on their way
        self._timer: Timer | None = None  # the next departure from the queue
        self._next_due: float | None = None
        self._slots: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._restore()

    # -- submission --------------------------------------------------------------------------------------

    def send_new(self, mailbox: Mailbox, message: dict, attachments: list[dict], save_to_sent_items: bool,
                 mime: bytes | None = None) -> None:
        """sendMail: checked as a whole first, then saved and submitted atomically."""
        check_sendable(message, self._synchronous_recipient_limit())
        with self.store.transaction():
            draft_id = self.store.create_draft(mailbox, "drafts", message, attachments, mime)
            self._submit(mailbox, draft_id, save_to_sent_items)
        with self._lock:
            self.sends += 1

    def send_draft(self, mailbox: Mailbox, message_id: str) -> None:
        """Send a draft (by id or immutable id), as POST .../send, a reviewer or the viewer does."""
        with self.store.transaction():
            message, _ = self.store.load(mailbox, message_id)
            if not message.get("isDraft"):
                raise GraphError(400, "ErrorInvalidOperation", "Only a draft message can be sent.")
            check_sendable(message, self._synchronous_recipient_limit())
            self._submit(mailbox, message["id"], save_to_sent_items=True)

    def _synchronous_recipient_limit(self) -> int:
        """The recipients-per-message limit when it is answered with a 400 (else it is an NDR, or off)."""
        return self.limits.recipients_per_message if self.limits.recipient_limit_answer == "400" else 0

    def _submit(self, mailbox: Mailbox, draft_id: str, save_to_sent_items: bool) -> None:
        """Accepted (counted as a submission): out at once when the message rate allows it and nothing of the
        mailbox waits before it; else to the queue folder, to leave at its slot."""
        message, _ = self.store.load(mailbox, draft_id)
        self.store.record_submission(mailbox, message)
        now = self.clock.time()
        with self._lock:
            slot = self._reserve_slot(mailbox.id, now)
        if slot <= now and not self.ledger.queued(mailbox.id):
            self._depart(mailbox, message, save_to_sent_items, now)
            return
        folder = self.limits.queue_folder
        self.store.update(mailbox, draft_id, {"isDraft": False})
        if folder != "drafts":
            self.store.move(mailbox, draft_id, folder)
        self.ledger.enqueue(mailbox.id, message[IMMUTABLE_ID], slot, save_to_sent_items)
        self._schedule(slot)

    def _reserve_slot(self, mailbox_id: str, now: float) -> float:
        """When the next message of this mailbox may leave: at most ``message_rate`` in any minute, in order
        (the excess carried over to later minutes, as Exchange does). Called under ``_lock``."""
        rate = self.limits.messages_per_minute
        if not rate:
            return now
        slots = self._slots[mailbox_id]
        while slots and slots[0] <= now - MINUTE:
            slots.popleft()
        slot = max(now, slots[-1] if slots else now)
        if len(slots) >= rate:
            slot = max(slot, slots[-rate] + MINUTE)
        slots.append(slot)
        return slot

    def _schedule(self, due: float) -> None:
        with self._lock:
            if self._next_due is not None and self._next_due <= due and self._timer is not None \
                    and self._timer.is_alive():
                return
            if self._timer is not None:
                self._timer.cancel()
            self._next_due = due
            self._timer = self.clock.call_later(due - self.clock.time(), self.drain)

    # -- the queue -----------------------------------------------------------------------------------

    def drain(self) -> None:
        """Let every message whose slot has come leave, in order; cheap when none has."""
        next_due = self._next_due
        if next_due is None or next_due > self.clock.time():
            return
        with self._drain_lock:
            for item in self.ledger.queued(until=self.clock.time()):
                mailbox = self.store.find_mailbox(item.mailbox_id)
                with self.store.transaction():
                    self.ledger.dequeue(item.message_id)
                    try:
                        message, _ = self.store.load(mailbox, item.message_id) if mailbox else ({}, "")
                    except GraphError:  # deleted while it waited: nothing leaves
                        continue
                    if mailbox is not None and message:
                        self._depart(mailbox, message, item.save, item.due)
            with self._lock:
                self._next_due = None
            due = self.ledger.next_due()
            if due is not None:
                self._schedule(due)

    def queued(self, mailbox: Mailbox) -> list[dict]:
        """The mailbox's waiting mail in the order it leaves: {id (immutable), leavesAt, recipients}."""
        out = []
        for item in self.ledger.queued(mailbox.id):
            try:
                message, _ = self.store.load(mailbox, item.message_id)
            except GraphError:
                continue
            out.append({"id": item.message_id, "subject": message.get("subject", ""), "leavesAt": iso(item.due),
                        "recipients": len(_recipients(message))})
        return out

    # -- leaving: Exchange's sending limits, then Sent Items, Inboxes and bounces ----------------------------

    def _depart(self, mailbox: Mailbox, message: dict, save_to_sent_items: bool, when: float) -> None:
        """The message leaves at ``when`` (its slot): refused whole by a sending limit, or filed in Sent Items (or
        not), a copy in each recipient's Inbox, and a non-delivery report for those that bounce."""
        store, limits = self.store, self.limits
        stamp = iso(when)
        sent = {**message, "isDraft": False, "sentDateTime": stamp, "receivedDateTime": stamp}
        for key in ("id", "parentFolderId", "lastModifiedDateTime"):
            sent.pop(key, None)
        mime = store.raw_mime(message["id"])
        recipients = _recipients(message)
        refused = self._refusal(mailbox, recipients, when)
        if refused:  # never handed to transport: no Sent Items copy (inferred from Graph's account of sendMail)
            self.ledger.record(mailbox.id, when, 0, 0)
            store.remove(message["id"])
            self._report_failures(mailbox, sent, mime, refused, when)
            return
        if save_to_sent_items and not _delete_after_submit(message):  # the immutable id goes along
            store.insert(mailbox, "sentitems", sent, [], mime, copy_attachments_of=message["id"])
        delivered = {**sent, "isRead": False}
        delivered.pop(IMMUTABLE_ID, None)
        delivered.pop("bccRecipients", None)
        failures: list[Failure] = []
        external_cap = limits.daily_external_recipients
        external_used = sum(n for _, n in self.ledger.external(when - DAY)) if external_cap else 0
        external = 0
        for address, name in recipients:
            known = store.find_mailbox(address)
            if not self._inside(address):
                if external_cap and external_used + external >= external_cap:
                    failures.append(Failure(address, "5.7.232" if limits.trial_tenant else "5.7.233"))
                    continue
                external += 1
            status = self.bounces.status_for(address, bool(known and known.is_user), store.user_domains)
            if status:
                failures.append(Failure(address, status))
                continue
            inbox = known or store.recipient_mailbox(address, name)
            store.insert(inbox, "inbox", delivered, [], mime, copy_attachments_of=message["id"])
        self.ledger.record(mailbox.id, when, len(recipients), external)
        store.remove(message["id"])
        if failures:
            self._report_failures(mailbox, sent, mime, failures, when)

    def _refusal(self, mailbox: Mailbox, recipients: list[tuple[str, str]], when: float) -> list[Failure]:
        """Every recipient's failure when a limit refuses the whole message; empty when it may go."""
        limits, count = self.limits, len(recipients)
        per_message = limits.recipients_per_message
        if per_message and count > per_message and limits.recipient_limit_answer == "ndr":
            note = (f"This message wasn't delivered to anyone because there are too many recipients. The limit is "
                    f"{per_message}. This message has {count} recipients.")
            return [Failure(address, "5.5.3", note=note) for address, _ in recipients]
        daily = limits.daily_recipients
        if daily and self.recipients_used(mailbox, when) + count > daily:
            status = limits.recipient_rate_status
            diagnostic = SUBMISSION_QUOTA if status == "5.2.2" else ""
            note = ("Your message can't be sent because you've reached your daily limit for message recipients "
                    f"({daily} in 24 hours).")
            return [Failure(address, status, diagnostic, note) for address, _ in recipients]
        return []

    def _inside(self, address: str) -> bool:
        """Whether the address is in one of the tenant's accepted domains (else TERRL counts it)."""
        domain = address.rpartition("@")[2].lower()
        return domain in self.bounces.accepted_domains or domain in self.store.user_domains

    def recipients_used(self, mailbox: Mailbox, when: float | None = None) -> int:
        """Recipients the mailbox sent in the 24 hours before ``when`` (now)."""
        when = self.clock.time() if when is None else when
        return sum(n for _, n in self.ledger.sent(mailbox.id, when - DAY))

    def budget(self, mailbox: Mailbox) -> dict:
        """The mailbox's sending budget now: recipients in the window and when it frees, what waits in the
        Outbox and when it leaves, the message rate; and the tenant's external recipients (TERRL)."""
        now = self.clock.time()
        limits = self.limits
        sent = self.ledger.sent(mailbox.id, now - DAY)
        used = sum(n for _, n in sent)
        waiting = self.queued(mailbox)
        daily, terrl = limits.daily_recipients, limits.daily_external_recipients
        return {
            "mailbox": mailbox.address, "now": iso(now),
            "recipientsUsed": used, "recipientLimit": daily or None,
            "recipientsLeft": max(0, daily - used) if daily else None,
            "windowFreesAt": iso(next(t for t, n in sent if n) + DAY) if any(n for _, n in sent) else None,
            "messageRate": limits.messages_per_minute or None, "queued": len(waiting),
            "queuedRecipients": sum(q["recipients"] for q in waiting),
            "nextLeavesAt": waiting[0]["leavesAt"] if waiting else None,
            "lastLeavesAt": waiting[-1]["leavesAt"] if waiting else None,
            "recipientsPerMessage": limits.recipients_per_message or None,
            "externalUsed": sum(n for _, n in self.ledger.external(now - DAY)), "externalLimit": terrl or None,
        }

    # -- reports -------------------------------------------------------------------------------------

    def _report_failures(self, mailbox: Mailbox, sent: dict, mime: bytes | None, failures: list[Failure],
                         when: float) -> None:
        """The sender's non-delivery report, in its Inbox the bounces' delay after the message left."""
        ndr, ndr_mime = report(sent, mime or build_eml(sent, []), mailbox.as_recipient(), failures,
                               self.tenant_domain, iso(when + max(0.0, self.bounces.delay)))

        def deliver() -> None:
            with self.store.transaction():
                if self.store.find_mailbox(mailbox.id) is not None:
                    self.store.insert(mailbox, "inbox", ndr, [], ndr_mime)

        if self.bounces.delay <= 0:
            deliver()
            return
        with self._lock:
            self._reports = [t for t in self._reports if t.is_alive()]
            self._reports.append(self.clock.call_later(when + self.bounces.delay - self.clock.time(), deliver))

    def cancel_reports(self) -> None:
        """Drop the non-delivery reports not yet delivered."""
        with self._lock:
            for timer in self._reports:
                timer.cancel()
            self._reports = []

    def forget(self) -> None:
        """Every mailbox emptied (``MailStore.clear``: the queue goes with the messages): drop the reports on
        their way, the queue's timer and the message rate's slots."""
        self.cancel_reports()
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._next_due = None, None
            self._slots.clear()

    def _restore(self) -> None:
        """A state directory's queue and the last minute's departures, as a restarted emulator finds them."""
        for item in self.ledger.queued():
            self._slots[item.mailbox_id].append(item.due)
        due = self.ledger.next_due()
        if due is not None:
            self._schedule(due)


def _recipients(message: dict) -> list[tuple[str, str]]:
    """(address, display name) of each recipient in to, cc and bcc, once each (Exchange delivers once)."""
    seen, out = set(), []
    for name in ("toRecipients", "ccRecipients", "bccRecipients"):
        for r in message.get(name) or []:
            address = r["emailAddress"]["address"]
            if address.lower() not in seen:
                seen.add(address.lower())
                out.append((address, r["emailAddress"].get("name", "")))
    return out


def _delete_after_submit(message: dict) -> bool:
    """PidTagDeleteAfterSubmit (Boolean 0x0E01) set on a draft: no copy in Sent Items."""
    return any(key == "boolean 0x0e01" and value.lower() == "true" for key, value in extended_properties(message))
