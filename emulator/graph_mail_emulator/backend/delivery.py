"""Delivery: the one road a submitted message takes (sendMail, or a draft sent), as Exchange Online's
transport handles it: checked, filed in Sent Items, a copy in each recipient's Inbox, and for the recipients
that bounce a non-delivery report in the sender's Inbox after a delay."""

from __future__ import annotations

import threading

from graph_mail_emulator.backend.bounces import Bounces, Failure, report
from graph_mail_emulator.backend.clock import Clock
from graph_mail_emulator.backend.mime import build_eml
from graph_mail_emulator.backend.rules import check_sendable
from graph_mail_emulator.backend.store import IMMUTABLE_ID, Mailbox, MailStore, extended_properties
from graph_mail_emulator.errors import GraphError


class Delivery:
    """``sends`` counts the sendMail requests accepted (a draft sent is not one)."""

    def __init__(self, store: MailStore, bounces: Bounces, clock: Clock, tenant_domain: str):
        self.store = store
        self.bounces = bounces
        self.clock = clock
        self.tenant_domain = tenant_domain  # the postmaster's, on non-delivery reports
        self.sends = 0
        self._lock = threading.Lock()
        self._reports: list[threading.Timer] = []  # non-delivery reports on their way

    def send_new(self, mailbox: Mailbox, message: dict, attachments: list[dict], save_to_sent_items: bool,
                 mime: bytes | None = None) -> None:
        """sendMail: checked as a whole first, then saved and delivered atomically."""
        check_sendable(message)
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
            check_sendable(message)
            self._submit(mailbox, message["id"], save_to_sent_items=True)

    def _submit(self, mailbox: Mailbox, draft_id: str, save_to_sent_items: bool) -> None:
        """The draft leaves Drafts for Sent Items (or vanishes); each recipient's Inbox gets a copy."""
        store = self.store
        message, _ = store.load(mailbox, draft_id)
        stamp = self.clock.iso()
        sent = {**message, "isDraft": False, "sentDateTime": stamp, "receivedDateTime": stamp}
        for key in ("id", "parentFolderId", "lastModifiedDateTime"):
            sent.pop(key, None)
        mime = store.raw_mime(draft_id)
        if save_to_sent_items and not _delete_after_submit(message):  # the immutable id goes along
            store.insert(mailbox, "sentitems", sent, [], mime, copy_attachments_of=draft_id)
        store.record_submission(mailbox, message)
        delivered = {**sent, "isRead": False}
        delivered.pop(IMMUTABLE_ID, None)
        delivered.pop("bccRecipients", None)
        seen, failures = set(), []
        for name in ("toRecipients", "ccRecipients", "bccRecipients"):
            for r in message.get(name, []):
                address = r["emailAddress"]["address"]
                if address.lower() in seen:
                    continue
                seen.add(address.lower())
                known = store.find_mailbox(address)
                status = self.bounces.status_for(address, bool(known and known.is_user), store.user_domains)
                if status:
                    failures.append(Failure(address, status))
                    continue
                inbox = known or store.recipient_mailbox(address, r["emailAddress"].get("name", ""))
                store.insert(inbox, "inbox", delivered, [], mime, copy_attachments_of=draft_id)
        store.remove(draft_id)
        if failures:
            self._report_failures(mailbox, sent, mime, failures)

    def _report_failures(self, mailbox: Mailbox, sent: dict, mime: bytes | None, failures: list[Failure]) -> None:
        """The sender's non-delivery report, in its Inbox after the bounces' delay."""
        ndr, ndr_mime = report(sent, mime or build_eml(sent, []), mailbox.as_recipient(), failures,
                               self.tenant_domain, self.clock.iso())

        def deliver() -> None:
            with self.store.transaction():
                if self.store.find_mailbox(mailbox.id) is not None:
                    self.store.insert(mailbox, "inbox", ndr, [], ndr_mime)

        if self.bounces.delay <= 0:
            deliver()
            return
        with self._lock:
            self._reports = [t for t in self._reports if t.is_alive()]
            self._reports.append(self.clock.call_later(self.bounces.delay, deliver))

    def cancel_reports(self) -> None:
        """Drop the non-delivery reports not yet delivered."""
        with self._lock:
            for timer in self._reports:
                timer.cancel()
            self._reports = []


def _delete_after_submit(message: dict) -> bool:
    """PidTagDeleteAfterSubmit (Boolean 0x0E01) set on a draft: no copy in Sent Items."""
    return any(key == "boolean 0x0e01" and value.lower() == "true" for key, value in extended_properties(message))
