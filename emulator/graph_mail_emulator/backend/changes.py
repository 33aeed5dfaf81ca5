"""Change tracking for ``messages/delta``: what happened to a folder's messages after a point in time.

The store's triggers (``schema.py``) append one row per change to the ``changes`` table, numbered in order
(``seq``), whatever wrote the message: delivery, a PATCH, a move, a delete, inbound mail. A delta link holds
a ``seq``; the next round reads the rows after it. ``expire()`` adds a marker row: links that hold an older
``seq`` are refused as Graph refuses a delta token it no longer knows (``syncStateNotFound``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from graph_mail_emulator.backend.store import Mailbox, MailStore


@dataclass(frozen=True)
class Change:
    """What a round reports about one message: its row now (None when it left the folder), and whether it
    came into the folder during the round (created) or was there before (updated)."""
    key: str  # the id the client knows it by (the immutable id when it asked for those)
    message: dict | None
    created: bool


class ChangeLog:
    def __init__(self, store: MailStore):
        self.store = store
        self.expired_status = 410  # the status an expired link is answered with (410, or a 400)

    def latest(self) -> int:
        """The newest change's number: a round that starts now reports what comes after it."""
        with self.store.reading() as db:
            return db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]

    def floor(self) -> int:
        """Links holding a number below this one have expired."""
        with self.store.reading() as db:
            return db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes WHERE kind = 'expired'").fetchone()[0]

    def expire(self, status: int = 410, forget: bool = False) -> None:
        """Every delta and next link issued so far stops working (answered ``status``); ``forget``: drop the
        changes themselves too (the mailboxes were emptied)."""
        if status not in (400, 410):
            raise ValueError(f"status {status!r}: an expired delta link is answered 410 or 400")
        self.expired_status = status
        with self.store.transaction(), self.store.reading() as db:
            if forget:
                db.execute("DELETE FROM changes")
            db.execute("INSERT INTO changes (kind) VALUES ('expired')")

    def changed(self, mailbox: Mailbox, folder: str, since: int, upto: int, immutable: bool) -> list[str]:
        """The keys (ids, or immutable ids) of the messages of one folder that changed in (since, upto], in
        the order of their first change: the same list whenever it is asked, so a round can page through it."""
        column = "immutable_id" if immutable else "message_id"
        with self.store.reading() as db:
            rows = db.execute(  # the column is one of two fixed names; every value is bound
                f"SELECT {column}, MIN(seq) AS first FROM changes WHERE mailbox_id = ? AND folder = ? "  # noqa: S608
                f"AND seq > ? AND seq <= ? AND {column} IS NOT NULL GROUP BY {column} ORDER BY first",
                (mailbox.id, folder, since, upto)).fetchall()
        return [row[0] for row in rows]

    def describe(self, mailbox: Mailbox, folder: str, keys: list[str], since: int, upto: int,
                 immutable: bool) -> list[Change]:
        """Each key's message as it is now in the folder (or None), and whether it arrived in the round."""
        column = "immutable_id" if immutable else "message_id"
        out = []
        with self.store.reading() as db:
            for key in keys:
                row = db.execute(f"SELECT data FROM messages WHERE {'immutable_id' if immutable else 'id'} = ? "  # noqa: S608
                                 "AND mailbox_id = ? AND folder = ?", (key, mailbox.id, folder)).fetchone()
                arrived = db.execute(f"SELECT 1 FROM changes WHERE {column} = ? AND mailbox_id = ? AND "  # noqa: S608
                                     "folder = ? AND seq > ? AND seq <= ? AND kind = 'created' LIMIT 1",
                                     (key, mailbox.id, folder, since, upto)).fetchone()
                out.append(Change(key, json.loads(row[0]) if row else None, arrived is not None))
        return out

    def current(self, mailbox: Mailbox, folder: str, after: tuple[float, int] | None, limit: int) -> list[tuple]:
        """An initial round's page: the folder's messages newest first, after the cursor (created, rowid);
        a cursor on rows, not an offset, so that a message deleted meanwhile moves no other out of reach."""
        with self.store.reading() as db:
            if after is None:
                rows = db.execute("SELECT created, rowid, data FROM messages WHERE mailbox_id = ? AND folder = ? "
                                  "ORDER BY created DESC, rowid DESC LIMIT ?", (mailbox.id, folder, limit))
            else:
                rows = db.execute("SELECT created, rowid, data FROM messages WHERE mailbox_id = ? AND folder = ? "
                                  "AND (created, rowid) < (?, ?) ORDER BY created DESC, rowid DESC LIMIT ?",
                                  (mailbox.id, folder, after[0], after[1], limit))
            return [(created, rowid, json.loads(data)) for created, rowid, data in rows.fetchall()]
