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
"""
# An attachment's bytes: its contents row, or (rows from before that table) its own column.
CONTENT = "COALESCE(a.content, (SELECT c.content FROM contents c WHERE c.id = a.content_ref))"
# Columns added after the first release; a state directory from then lacks them.
_MIGRATIONS = {"attachments": {"sha256": "TEXT", "content_ref": "INTEGER"},
               "messages": {"immutable_id": "TEXT", "search_text": "TEXT"}}
# Indexes on columns a migration may have added.
_LATE_INDEXES = """
CREATE INDEX IF NOT EXISTS messages_by_immutable_id ON messages (immutable_id);
CREATE INDEX IF NOT EXISTS extended_properties_by_message ON extended_properties (message_id);
CREATE INDEX IF NOT EXISTS submissions_by_property ON submissions (property_id, value);
CREATE INDEX IF NOT EXISTS attachments_by_content ON attachments (content_ref);
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
