"""The backend's clock: every time the mail side stamps or measures comes from one object, so that a test
(and Exchange's transport, later) can move it. Here a stopped clock stands in for the real one."""

from __future__ import annotations

import datetime as dt

from graph_mail_emulator import Limits
from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend.bounces import Bounces
from graph_mail_emulator.backend.clock import Clock

STOPPED = dt.datetime(2031, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc).timestamp()


class StoppedClock(Clock):
    """Always the same instant; timers are kept, not started."""

    def __init__(self):
        self.later: list[tuple[float, object]] = []

    def time(self) -> float:
        return STOPPED

    def monotonic(self) -> float:
        return 1000.0

    def call_later(self, delay, action):
        self.later.append((delay, action))
        return _Unstarted()


class _Unstarted:
    def cancel(self) -> None:
        pass

    def is_alive(self) -> bool:
        return True


def test_stamps_expiries_and_reports_come_from_the_backends_clock(tmp_path):
    clock = StoppedClock()
    bounces = Bounces(("contoso.onmicrosoft.com",), ("gone@fabrikam.com=5.1.1",), delay=30)
    mail = MailBackend(str(tmp_path / "mail.sqlite"), tmp_path / "uploads", Limits(), bounces,
                       "contoso.onmicrosoft.com", clock=clock)
    sender = mail.store.add_user("airflow@contoso.com")
    message = {"subject": "s", "body": {"contentType": "text", "content": "x"},
               "singleValueExtendedProperties": [{"id": "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name k",
                                                  "value": "v"}],
               "toRecipients": [{"emailAddress": {"address": "ann@fabrikam.com"}},
                                {"emailAddress": {"address": "gone@fabrikam.com"}}]}
    mail.delivery.send_new(sender, message, [], True)
    (sent,) = mail.store.list_folder(sender, "sentitems")
    (received,) = mail.store.list_folder(mail.store.find_mailbox("ann@fabrikam.com"), "inbox")
    stamp = "2031-03-04T05:06:07Z"
    assert sent["sentDateTime"] == sent["createdDateTime"] == received["receivedDateTime"] == stamp
    with mail.store.reading() as db:
        assert db.execute("SELECT DISTINCT created FROM messages").fetchall() == [(STOPPED,)]
        assert db.execute("SELECT DISTINCT time FROM submissions").fetchall() == [(STOPPED,)]
    ((delay, deliver_report),) = clock.later  # the bounce's report waits on the clock, not on a thread of its own
    assert delay == 30 and mail.store.list_folder(sender, "inbox") == []
    deliver_report()
    (report,) = mail.store.list_folder(sender, "inbox")
    assert report["subject"] == "Undeliverable: s" and report["receivedDateTime"] == "2031-03-04T05:06:37Z"  # +30 s
    session = mail.uploads.open(sender.id, sent["id"], {"size": 1}, lifetime=900)
    assert session.expires_at == STOPPED + 900
    mail.upload_budget.spend(sender.id, 1)
    with mail.throttle.slot(sender.address):
        pass
    assert mail.clock is mail.delivery.clock is mail.store.clock is mail.uploads.clock is clock
    assert mail.throttle.clock is mail.upload_budget.clock is clock


def test_a_reset_waits_for_a_timer_running_now_so_nothing_it_writes_survives(graph_emulator):
    """A report on its way or an Outbox departure runs in the clock's thread. One that was running while the
    emulator reset (between two tests) wrote its mail into the emptied store, and the next test found a bounce
    it never caused (seen in CI: a 5.1.10 report where a TERRL bounce was expected)."""
    import threading
    import time

    started, release = threading.Event(), threading.Event()

    def late_arrival():
        started.set()
        release.wait(10)
        graph_emulator.inbound.receive(to=graph_emulator.default_sender, sender="late@elsewhere.example",
                                       subject="written by a timer that was running during the reset")

    graph_emulator.backend.clock.call_later(0, late_arrival)
    assert started.wait(10)
    resetting = threading.Thread(target=graph_emulator.reset)
    resetting.start()
    time.sleep(0.3)  # the reset is under way (before the fix: the store already emptied)
    release.set()
    resetting.join(30)
    assert not resetting.is_alive()
    assert graph_emulator.inspect.messages(graph_emulator.default_sender) == []


def test_a_reset_drops_the_users_a_test_added(graph_emulator):
    """A user added in one test made its domain the tenant's for every later test on that emulator: mail to
    x@fabrikam.example bounced 5.1.10 (an unknown user of the tenant) instead of leaving as external mail (seen
    in CI, the TERRL test after the accepted-domain one)."""
    graph_emulator.backend.store.add_user("ops@fabrikam.example")
    graph_emulator.reset()
    assert not graph_emulator.backend.store.find_mailbox("ops@fabrikam.example").is_user
    assert "fabrikam.example" not in graph_emulator.backend.store.user_domains
    assert graph_emulator.backend.store.find_mailbox(graph_emulator.default_sender).is_user
