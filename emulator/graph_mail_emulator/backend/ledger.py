"""What Exchange's transport keeps beside the mailboxes, in the store's SQLite: the queue of accepted mail
waiting for its slot (each message by its immutable id, so that a move does not lose it), and the ledger of
departures that the 24-hour windows count (recipients per mailbox, external recipients per tenant).

Persistence only: ``delivery.py`` decides what goes in and when it leaves. Writes join the caller's
``store.transaction()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from graph_mail_emulator.backend.store import MailStore


@dataclass(frozen=True)
class Queued:
    message_id: str  # the immutable id
    mailbox_id: str
    due: float  # epoch seconds on the backend's clock
    save: bool  # a copy in Sent Items when it leaves


class Ledger:
    def __init__(self, store: MailStore):
        self.store = store

    # -- the queue -----------------------------------------------------------------------------------

    def enqueue(self, mailbox_id: str, message_id: str, due: float, save: bool) -> None:
        with self.store.reading() as db:
            db.execute("INSERT OR REPLACE INTO queue VALUES (?,?,?,?)", (message_id, mailbox_id, due, int(save)))

    def dequeue(self, message_id: str) -> None:
        with self.store.reading() as db:
            db.execute("DELETE FROM queue WHERE message_id = ?", (message_id,))

    def queued(self, mailbox_id: str | None = None, until: float | None = None) -> list[Queued]:
        """Waiting mail in the order it leaves (by its slot, then as it came): one mailbox's or all, those due by
        ``until`` or all."""
        where: list[str] = []
        args: list[object] = []
        if mailbox_id is not None:
            where.append("mailbox_id = ?")
            args.append(mailbox_id)
        if until is not None:
            where.append("due <= ?")
            args.append(until)
        condition = (" WHERE " + " AND ".join(where)) if where else ""
        with self.store.reading() as db:
            rows = db.execute(f"SELECT message_id, mailbox_id, due, save FROM queue{condition} "  # noqa: S608
                              "ORDER BY due, rowid", args).fetchall()
        return [Queued(m, b, d, bool(s)) for m, b, d, s in rows]

    def next_due(self) -> float | None:
        with self.store.reading() as db:
            return db.execute("SELECT MIN(due) FROM queue").fetchone()[0]

    # -- departures ----------------------------------------------------------------------------------

    def record(self, mailbox_id: str, when: float, recipients: int, external: int) -> None:
        with self.store.reading() as db:
            db.execute("INSERT INTO departures VALUES (?,?,?,?)", (mailbox_id, when, recipients, external))

    def sent(self, mailbox_id: str, since: float) -> list[tuple[float, int]]:
        """(time, recipients) of each message the mailbox sent after ``since``, oldest first."""
        with self.store.reading() as db:
            return db.execute("SELECT time, recipients FROM departures WHERE mailbox_id = ? AND time > ? "
                              "ORDER BY time", (mailbox_id, since)).fetchall()

    def external(self, since: float) -> list[tuple[float, int]]:
        """(time, external recipients) of each message the tenant sent outside after ``since``, oldest first."""
        with self.store.reading() as db:
            return db.execute("SELECT time, external FROM departures WHERE time > ? AND external > 0 ORDER BY time",
                              (since,)).fetchall()
