"""Read-only queries over the mail store for the viewer and the inspection API, filtered in SQL.

A message's searchable text (subject, sender and recipients, extended property values, case-folded) is
kept in a column when the message is stored, so a search is one ``instr`` over an indexed-free column,
never a JSON parse of every row in Python.
"""

from __future__ import annotations

import json

from graph_mail_emulator.backend.schema import CONTENT


def search_text(message: dict) -> str:
    """What a viewer search matches, case-folded: the subject, every person (name and address), and the
    single-value extended properties' values (the idempotency key is one)."""
    people = [message.get("from"), message.get("sender")]
    for field in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
        people += message.get(field) or []
    texts = [message.get("subject") or ""]
    for person in people:
        email = (person or {}).get("emailAddress") or {} if isinstance(person, dict) else {}
        texts += [str(email.get("name") or ""), str(email.get("address") or "")]
    texts += [str(p.get("value", "")) for p in message.get("singleValueExtendedProperties") or []
              if isinstance(p, dict)]
    return "\n".join(t for t in texts if t).casefold()


def browse(store, mailbox=None, folder: str | None = None, query: str = "", limit: int = 200) -> tuple[list[dict], int]:
    """(newest ``limit`` messages matching ``query``, how many match in all), in one mailbox/folder or all.

    Each message comes with "_mailbox", "_folder", "_attached" (files), "_inline" and "_attachedBytes"."""
    where, args = [], []
    if mailbox is not None:
        where.append("m.mailbox_id = ?")
        args.append(mailbox.id)
    if folder is not None:
        where.append("m.folder = ?")
        args.append(folder)
    if query:
        where.append("instr(m.search_text, ?) > 0")
        args.append(query.casefold())
    condition = (" WHERE " + " AND ".join(where)) if where else ""
    with store.reading() as db:
        # The condition is built here from fixed clauses; every value is a bound parameter.
        total = db.execute(f"SELECT COUNT(*) FROM messages m{condition}", args).fetchone()[0]  # noqa: S608
        rows = db.execute(
            "SELECT b.address, m.folder, m.data, COALESCE(a.files, 0), COALESCE(a.inline, 0), COALESCE(a.bytes, 0) "  # noqa: S608
            "FROM (SELECT * FROM messages m" + condition + " ORDER BY m.created DESC, m.rowid DESC LIMIT ?) m "
            "JOIN mailboxes b ON b.id = m.mailbox_id "
            "LEFT JOIN (SELECT message_id, SUM(1 - is_inline) AS files, SUM(is_inline) AS inline, "
            "SUM(size) AS bytes FROM attachments GROUP BY message_id) a ON a.message_id = m.id "
            "ORDER BY m.created DESC, m.rowid DESC", [*args, limit]).fetchall()
    page = [{**json.loads(data), "_mailbox": address, "_folder": folder_name, "_attached": files,
             "_inline": inline, "_attachedBytes": size}
            for address, folder_name, data, files, inline, size in rows]
    return page, total


def browse_sends(store, query: str = "", limit: int = 200) -> tuple[list[list[dict]], int]:
    """Every mailbox at once, one entry per message with its copies (the sender's Sent Items copy and each
    recipient's Inbox copy share an internetMessageId): (the newest ``limit`` messages, each a list of its
    copies as ``browse`` gives them, Sent Items first; how many messages match in all)."""
    where, args = ("WHERE instr(search_text, ?) > 0", [query.casefold()]) if query else ("", [])
    keyed = ("SELECT rowid AS rid, id, mailbox_id, folder, created, data, "  # noqa: S608 - fixed clauses
             f"COALESCE(json_extract(data, '$.internetMessageId'), id) AS k FROM messages {where}")
    with store.reading() as db:
        total = db.execute(f"SELECT COUNT(DISTINCT k) FROM ({keyed})", args).fetchone()[0]  # noqa: S608
        keys = [row[0] for row in db.execute(
            f"SELECT k FROM ({keyed}) GROUP BY k ORDER BY MAX(created) DESC, MAX(rid) DESC LIMIT ?",  # noqa: S608
            [*args, limit])]
        rows = db.execute(
            "SELECT m.k, b.address, m.folder, m.data, COALESCE(a.files, 0), COALESCE(a.inline, 0), "  # noqa: S608
            f"COALESCE(a.bytes, 0) FROM ({keyed}) m JOIN mailboxes b ON b.id = m.mailbox_id "
            "LEFT JOIN (SELECT message_id, SUM(1 - is_inline) AS files, SUM(is_inline) AS inline, "
            "SUM(size) AS bytes FROM attachments GROUP BY message_id) a ON a.message_id = m.id "
            f"WHERE m.k IN ({','.join('?' * len(keys))}) ORDER BY b.address", [*args, *keys]).fetchall()
    copies: dict[str, list[dict]] = {key: [] for key in keys}
    for key, address, folder_name, data, files, inline, size in rows:
        copies[key].append({**json.loads(data), "_mailbox": address, "_folder": folder_name, "_attached": files,
                            "_inline": inline, "_attachedBytes": size})
    for group in copies.values():  # the sender's own copy first: it alone shows Bcc
        group.sort(key=lambda m: (m["_folder"] != "sentitems", m["_folder"] != "outbox", m["_folder"] != "drafts"))
    return [copies[key] for key in keys], total


def folder_counts(store) -> dict[str, dict[str, int]]:
    """{mailbox id: {folder: messages}} for every mailbox, in one query (a merge can make thousands)."""
    counts: dict[str, dict[str, int]] = {}
    with store.reading() as db:
        for mailbox_id, folder, count in db.execute(
                "SELECT mailbox_id, folder, COUNT(*) FROM messages GROUP BY mailbox_id, folder"):
            counts.setdefault(mailbox_id, {})[folder] = count
    return counts


def attachment_content(store, message_id: str, attachment_id: str | None = None,
                       content_id: str | None = None) -> tuple[dict, bytes] | None:
    """One attachment of a message with its bytes, by id or by Content-ID (a ``cid:`` reference)."""
    column, value = ("id", attachment_id) if attachment_id is not None else ("content_id", content_id)
    with store.reading() as db:
        row = db.execute(
            f"SELECT a.id, a.name, a.content_type, a.size, a.is_inline, a.content_id, {CONTENT} "  # noqa: S608
            f"FROM attachments a WHERE a.message_id = ? AND a.{column} = ? ORDER BY a.position LIMIT 1",
            (message_id, value)).fetchone()
    if row is None:
        return None
    meta = {"id": row[0], "name": row[1], "contentType": row[2], "size": row[3], "isInline": bool(row[4]),
            "contentId": row[5]}
    return meta, bytes(row[6] or b"")


def report_messages(store, mailbox, message: dict) -> list[dict]:
    """The non-delivery reports in this mailbox about ``message`` (a sent one), for the viewer's links."""
    if not message.get("internetMessageId") or message.get("_reportFor"):
        return []
    return _where(store, mailbox, "json_extract(data, '$._reportFor') = ?", message["internetMessageId"])


def reported_messages(store, mailbox, report: dict) -> list[dict]:
    """The sent message a non-delivery report is about (none if it was not kept in Sent Items)."""
    if not report.get("_reportFor"):
        return []
    return _where(store, mailbox, "folder = 'sentitems' AND json_extract(data, '$.internetMessageId') = ?",
                  report["_reportFor"])


def _where(store, mailbox, condition: str, value: str) -> list[dict]:
    with store.reading() as db:
        rows = db.execute(f"SELECT data FROM messages WHERE mailbox_id = ? AND {condition} "  # noqa: S608
                          "ORDER BY created", (mailbox.id, value)).fetchall()
    return [json.loads(r[0]) for r in rows]


def attachment_pieces(store, message_id: str, attachment_id: str, step: int = 1024 * 1024):
    """(metadata, size, the bytes in pieces of ``step``) of one attachment, or None: read from the store a
    piece at a time (each under its lock), so that a large one is never held whole."""
    with store.reading() as db:
        row = db.execute("SELECT a.id, a.name, a.content_type, a.size, a.is_inline, a.content_id, a.attachment_type, "
                         "a.content_ref, a.content IS NOT NULL FROM attachments a WHERE a.message_id = ? AND a.id = ?",
                         (message_id, attachment_id)).fetchone()
    if row is None:
        return None
    meta = {"id": row[0], "name": row[1], "contentType": row[2], "size": row[3], "isInline": bool(row[4]),
            "contentId": row[5], "attachmentType": row[6] or "file"}
    content_ref, legacy = row[7], row[8]

    def pieces():
        if legacy or content_ref is None:  # a row from before the contents table holds its bytes itself
            found = attachment_content(store, message_id, attachment_id)
            yield found[1] if found else b""
            return
        for offset in range(0, meta["size"], step):
            with store.reading() as db:  # the lock for one read, never while the piece is being sent
                blobopen = getattr(db, "blobopen", None)
                if blobopen is None:  # Python 3.10: SQLite's substr over the blob
                    piece = bytes(db.execute("SELECT substr(content, ?, ?) FROM contents WHERE id = ?",
                                             (offset + 1, step, content_ref)).fetchone()[0])
                else:
                    with blobopen("contents", "content", content_ref, readonly=True) as blob:
                        blob.seek(offset)
                        piece = blob.read(step)
            yield piece

    return meta, meta["size"], pieces()
