"""The mail store's SQLite schema, and the migrations that bring an older state directory up to it."""

from __future__ import annotations

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS mailboxes (
    id TEXT PRIMARY KEY, address TEXT UNIQUE COLLATE NOCASE, display_name TEXT,
    is_user INTEGER, rest_enabled INTEGER);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, mailbox_id TEXT, folder TEXT, created REAL, data TEXT, mime BLOB, immutable_id TEXT,
    search_text TEXT);
CREATE INDEX IF NOT EXISTS messages_by_folder ON messages (mailbox_id, folder, created);
CREATE TABLE IF NOT EXISTS attachments (
    id TEXT PRIMARY KEY, message_id TEXT, position INTEGER, name TEXT, content_type TEXT, size INTEGER,
    is_inline INTEGER, content_id TEXT, content BLOB, sha256 TEXT);
CREATE INDEX IF NOT EXISTS attachments_by_message ON attachments (message_id, position);
CREATE TABLE IF NOT EXISTS extended_properties (message_id TEXT, property_id TEXT, value TEXT);
CREATE INDEX IF NOT EXISTS extended_properties_by_value ON extended_properties (property_id, value);
CREATE TABLE IF NOT EXISTS submissions (mailbox_id TEXT, time REAL, property_id TEXT, value TEXT);
-- Attachment bytes, once per upload however many copies delivery makes (content last, so that a zeroblob
-- reserved for an upload is never held in memory whole).
CREATE TABLE IF NOT EXISTS contents (id INTEGER PRIMARY KEY, content BLOB);
-- Exchange's transport: mail accepted and waiting for its slot (the message itself is in the Outbox, or in
-- Drafts: Limits.queue_folder), and what each mailbox sent when (the 24-hour windows count from it).
CREATE TABLE IF NOT EXISTS queue (message_id TEXT PRIMARY KEY, mailbox_id TEXT, due REAL, save INTEGER);
CREATE INDEX IF NOT EXISTS queue_by_due ON queue (due);
CREATE TABLE IF NOT EXISTS departures (mailbox_id TEXT, time REAL, recipients INTEGER, external INTEGER);
CREATE INDEX IF NOT EXISTS departures_by_mailbox ON departures (mailbox_id, time);
CREATE INDEX IF NOT EXISTS departures_by_time ON departures (time);
"""
# An attachment's bytes: its contents row, or (rows from before that table) its own column.
CONTENT = "COALESCE(a.content, (SELECT c.content FROM contents c WHERE c.id = a.content_ref))"
# Columns added after the first release; a state directory from then lacks them.
_MIGRATIONS = {"attachments": {"sha256": "TEXT", "content_ref": "INTEGER", "attachment_type": "TEXT"},
               "messages": {"immutable_id": "TEXT", "search_text": "TEXT"}}
# Indexes on columns a migration may have added, and the change tracking that reads them.
_LATE_INDEXES = """
CREATE INDEX IF NOT EXISTS messages_by_immutable_id ON messages (immutable_id);
CREATE INDEX IF NOT EXISTS extended_properties_by_message ON extended_properties (message_id);
CREATE INDEX IF NOT EXISTS submissions_by_property ON submissions (property_id, value);
CREATE INDEX IF NOT EXISTS attachments_by_content ON attachments (content_ref);
-- Change tracking (messages/delta, changes.py): every row a message gets, changes or loses, in order, written
-- by triggers so that no road into the messages table can forget it. kind: created, updated, removed, or
-- expired (a marker: delta links issued before it no longer work).
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, mailbox_id TEXT, folder TEXT, message_id TEXT, immutable_id TEXT,
    kind TEXT);
CREATE INDEX IF NOT EXISTS changes_by_folder ON changes (mailbox_id, folder, seq);
CREATE INDEX IF NOT EXISTS changes_by_kind ON changes (kind, seq);
CREATE TRIGGER IF NOT EXISTS message_created AFTER INSERT ON messages BEGIN
    INSERT INTO changes (mailbox_id, folder, message_id, immutable_id, kind)
    VALUES (NEW.mailbox_id, NEW.folder, NEW.id, NEW.immutable_id, 'created');
END;
CREATE TRIGGER IF NOT EXISTS message_removed AFTER DELETE ON messages BEGIN
    INSERT INTO changes (mailbox_id, folder, message_id, immutable_id, kind)
    VALUES (OLD.mailbox_id, OLD.folder, OLD.id, OLD.immutable_id, 'removed');
END;
CREATE TRIGGER IF NOT EXISTS message_updated AFTER UPDATE ON messages BEGIN
    INSERT INTO changes (mailbox_id, folder, message_id, immutable_id, kind)
    SELECT OLD.mailbox_id, OLD.folder, OLD.id, OLD.immutable_id, 'removed'
    WHERE OLD.folder IS NOT NEW.folder OR OLD.id IS NOT NEW.id;
    INSERT INTO changes (mailbox_id, folder, message_id, immutable_id, kind)
    SELECT NEW.mailbox_id, NEW.folder, NEW.id, NEW.immutable_id,
           CASE WHEN OLD.folder IS NOT NEW.folder OR OLD.id IS NOT NEW.id THEN 'created' ELSE 'updated' END;
END;
"""


def connect(db_path: str, search_text) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit) with the schema in place; ``search_text(data)``
    fills the search column of rows a migration added it to."""
    db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    for table, added in _MIGRATIONS.items():
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for column, kind in added.items():
            if column not in columns:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    db.executescript(_LATE_INDEXES)
    stale = db.execute("SELECT id, data FROM messages WHERE search_text IS NULL").fetchall()
    db.executemany("UPDATE messages SET search_text = ? WHERE id = ?", [(search_text(d), i) for i, d in stale])
    return db
