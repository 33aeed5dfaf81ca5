"""The emulator's mail store, and delivery into it: the work a send does stays flat as the store fills
(counted in SQLite's own virtual-machine steps, not timed), attachment bytes are stored once however many
copies delivery makes, and a state directory from before that keeps working."""

from __future__ import annotations

import sqlite3

import pytest

from graph_mail_emulator import GraphEmulator, Limits
from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend.bounces import Bounces
from graph_mail_emulator.backend.store import MailStore

KEY = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name key"


def message(n: int) -> dict:
    return {"subject": f"statement {n}", "body": {"contentType": "text", "content": "x"},
            "toRecipients": [{"emailAddress": {"address": f"customer{n % 50}@fabrikam.com"}}],
            "singleValueExtendedProperties": [{"id": KEY, "value": f"key-{n}"}]}


def backend(tmp_path) -> MailBackend:
    """A backend on a fresh store: its ``store`` and the ``delivery`` that sends into it."""
    return MailBackend(str(tmp_path / "mail.sqlite"), tmp_path / "uploads", Limits(),
                       Bounces(("contoso.onmicrosoft.com",)), "contoso.onmicrosoft.com")


def sqlite_steps(store: MailStore, action) -> int:
    """How many SQLite virtual-machine instructions ``action`` runs: a measure of work that does not
    depend on the machine's speed."""
    steps = 0

    def count():
        nonlocal steps
        steps += 1
        return 0

    store._db.set_progress_handler(count, 1)
    try:
        action()
    finally:
        store._db.set_progress_handler(None, 1)
    return steps


def test_a_send_costs_the_same_on_a_full_store(tmp_path):
    mail = backend(tmp_path)
    store, send_new = mail.store, mail.delivery.send_new
    sender = store.add_user("airflow@contoso.com")
    for n in range(20):
        send_new(sender, message(n), [], True)
    draft = store.create_draft(sender, "drafts", message(-1), [])

    def work(n: int) -> int:
        def one():
            send_new(sender, message(n), [], True)
            store.load(sender, draft)
            store.find_by_property(sender, ["sentitems"], KEY, f"key-{n}")
        return sqlite_steps(store, one)

    near_empty = work(100_000)
    with store.transaction():
        for n in range(20, 3000):  # 3,000 sends: 6,000 stored messages
            send_new(sender, message(n), [], True)
    full = work(100_001)
    assert full <= near_empty * 1.2, (near_empty, full)


def test_attachment_bytes_are_stored_once_and_go_with_the_last_copy(tmp_path):
    mail = backend(tmp_path)
    store, send_new = mail.store, mail.delivery.send_new
    sender = store.add_user("airflow@contoso.com")
    attachment = {"name": "report.csv", "contentType": "text/csv", "isInline": False, "contentId": None,
                  "content": b"a,b\n1,2\n" * 1000}
    many = {**message(1), "toRecipients": [{"emailAddress": {"address": f"r{n}@fabrikam.com"}} for n in range(5)]}
    send_new(sender, many, [attachment], True)
    rows = store._db.execute("SELECT COUNT(*) FROM attachments").fetchone()[0]
    contents = store._db.execute("SELECT COUNT(*) FROM contents").fetchone()[0]
    assert (rows, contents) == (6, 1)  # five inboxes and Sent Items, one copy of the bytes
    copies = [m for box in store.mailboxes() for folder in ("inbox", "sentitems")
              for m in store.list_folder(box, folder)]
    for copy in copies:
        assert store.attachments(copy["id"], with_content=True)[0]["content"] == attachment["content"]
    for copy in copies[:-1]:
        store.remove(copy["id"])
    assert store._db.execute("SELECT COUNT(*) FROM contents").fetchone()[0] == 1
    store.remove(copies[-1]["id"])
    assert store._db.execute("SELECT COUNT(*) FROM contents").fetchone()[0] == 0


# The store as the first releases wrote it: attachment bytes in the attachments table itself.
OLD_SCHEMA = """
CREATE TABLE mailboxes (id TEXT PRIMARY KEY, address TEXT UNIQUE COLLATE NOCASE, display_name TEXT,
                        is_user INTEGER, rest_enabled INTEGER);
CREATE TABLE messages (id TEXT PRIMARY KEY, mailbox_id TEXT, folder TEXT, created REAL, data TEXT, mime BLOB);
CREATE TABLE attachments (id TEXT PRIMARY KEY, message_id TEXT, position INTEGER, name TEXT, content_type TEXT,
                          size INTEGER, is_inline INTEGER, content_id TEXT, content BLOB);
CREATE TABLE extended_properties (message_id TEXT, property_id TEXT, value TEXT);
CREATE TABLE submissions (mailbox_id TEXT, time REAL, property_id TEXT, value TEXT);
"""


@pytest.fixture
def old_state(tmp_path):
    """A state directory with one draft holding an attachment, in the old layout."""
    with GraphEmulator(tmp_path):
        pass  # config, CA and an empty store
    (tmp_path / "mail.sqlite").unlink()
    db = sqlite3.connect(tmp_path / "mail.sqlite")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO mailboxes VALUES ('m1', 'airflow@contoso.com', 'airflow', 1, 1)")
    draft = {"id": "AAMkAGolddraft0000000000000000000000", "subject": "kept", "isDraft": True,
             "toRecipients": [{"emailAddress": {"address": "ann@fabrikam.com"}}],
             "body": {"contentType": "text", "content": "x"}, "createdDateTime": "2026-01-01T00:00:00Z"}
    import json

    db.execute("INSERT INTO messages VALUES (?, 'm1', 'drafts', 1.0, ?, NULL)", (draft["id"], json.dumps(draft)))
    db.execute("INSERT INTO attachments VALUES ('AAMkAGAttold', ?, 0, 'old.txt', 'text/plain', 9, 0, NULL, ?)",
               (draft["id"], b"old bytes"))
    db.commit()
    db.close()
    return tmp_path, draft["id"]


def test_a_state_directory_from_before_keeps_its_attachments(old_state):
    directory, draft_id = old_state
    with GraphEmulator(directory) as emulator:
        assert emulator.inspect.attachment_bytes(draft_id) == {"old.txt": b"old bytes"}
        sender = emulator.backend.store.find_mailbox("airflow@contoso.com")
        emulator.backend.delivery.send_draft(sender, draft_id)
        delivered = emulator.inspect.messages("ann@fabrikam.com")
        assert [m["subject"] for m in delivered] == ["kept"]
        assert emulator.inspect.attachment_bytes(delivered[0]["id"]) == {"old.txt": b"old bytes"}
