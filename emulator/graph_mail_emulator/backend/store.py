"""The emulated tenant's mail: mailboxes, folders, messages and attachments, kept in SQLite.

Persistence only: what a submitted message becomes (Sent Items, Inboxes, bounces) is ``delivery.py``'s.
One lock around one connection; every change that touches several rows runs in ``transaction()``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from graph_mail_emulator.backend.clock import Clock
from graph_mail_emulator.backend.queries import search_text
from graph_mail_emulator.backend.schema import CONTENT, connect
from graph_mail_emulator.errors import GraphError
from graph_mail_emulator.private import create_private

# Delivery copies attachment rows, not bytes: each copy points at the same contents row (rows from before
# that table carry their bytes along, as they always did).
_COPY_ATTACHMENTS = """
INSERT INTO attachments (id, message_id, position, name, content_type, size, is_inline, content_id, content, sha256,
                         content_ref, attachment_type)
SELECT 'AAMkAGAtt' || lower(hex(randomblob(18))), ?, position, name, content_type, size, is_inline, content_id,
       content, sha256, content_ref, attachment_type FROM attachments WHERE message_id = ?"""
_BLOB_STEP = 4 * 1024 * 1024
IMMUTABLE_ID = "_immutableId"  # kept in the stored message; shown as "id" when a request prefers it
FOLDERS = ("inbox", "drafts", "sentitems", "deleteditems", "outbox", "archive", "junkemail")
FOLDER_NAMES = {"inbox": "Inbox", "drafts": "Drafts", "sentitems": "Sent Items", "deleteditems": "Deleted Items",
                "outbox": "Outbox", "archive": "Archive", "junkemail": "Junk Email"}


def new_id(prefix: str = "AAMkAG") -> str:
    """Opaque, URL-safe ids in the spirit of Exchange's (they are not parsed by anyone)."""
    return prefix + base64.urlsafe_b64encode(uuid.uuid4().bytes + os.urandom(8)).decode().rstrip("=")


_WELL_FORMED_ID = re.compile(r"^AA[A-Za-z0-9+/_-]{20,}={0,2}$")


def well_formed_id(item_id: str) -> bool:
    """The shape of Exchange's item ids (base64 from "AA..."), which Graph checks before looking one up:
    a malformed id is a 400, a well-formed one that names nothing a 404."""
    return bool(_WELL_FORMED_ID.match(item_id))


@dataclass
class Mailbox:
    id: str
    address: str
    display_name: str
    is_user: bool
    rest_enabled: bool

    def folder_id(self, folder: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(f"{self.id}/{folder}".encode()).digest()[:18]).decode()

    def as_recipient(self) -> dict:
        """The mailbox as a message names it (``from``, ``sender``, ``toRecipients``)."""
        return {"emailAddress": {"name": self.display_name, "address": self.address}}


class MailStore:
    """One lock around one SQLite connection: simple, and fast enough for thousands of messages."""

    def __init__(self, db_path: str = ":memory:", domain: str = "contoso.com", clock: Clock | None = None):
        self.domain = domain
        self.clock = clock or Clock()
        if db_path != ":memory:":  # SQLite gives its -wal and -shm files the database's mode
            create_private(Path(db_path))
        self._db = connect(db_path, lambda data: search_text(json.loads(data)))
        # Accepted domains by being a user's (users outlive clear(); add_user adds to it).
        self.user_domains = {_domain(row[0]) for row in self._db.execute("SELECT address FROM mailboxes WHERE "
                                                                         "is_user = 1")}
        self._lock = threading.RLock()
        self._in_transaction = False
        self.version = 0  # goes up with every change, so a viewer knows when to refresh

    def _changed(self) -> None:
        self.version += 1

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing, under the store's lock; a transaction inside another joins it."""
        with self._lock:
            if self._in_transaction:
                yield
                return
            self._db.execute("BEGIN")
            self._in_transaction = True
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._in_transaction = False

    @contextmanager
    def reading(self):
        """The connection, under the store's lock, for queries (``queries.py``)."""
        with self._lock:
            yield self._db

    # -- mailboxes -----------------------------------------------------------------------------------

    def _mailbox(self, row) -> Mailbox:
        return Mailbox(row[0], row[1], row[2], bool(row[3]), bool(row[4]))

    def add_user(self, address: str, display_name: str = "", rest_enabled: bool = True) -> Mailbox:
        with self._lock:
            existing = self.find_mailbox(address)
            mailbox_id = existing.id if existing else str(uuid.uuid4())
            self._db.execute("INSERT OR REPLACE INTO mailboxes VALUES (?,?,?,?,?)",
                             (mailbox_id, address, display_name or address.split("@")[0], 1, int(rest_enabled)))
            self.user_domains.add(_domain(address))
            self._changed()
            return self._existing(address)

    def _existing(self, address: str) -> Mailbox:
        mailbox = self.find_mailbox(address)
        if mailbox is None:  # pragma: no cover - just inserted under the lock
            raise GraphError(500, "InternalServerError", f"mailbox {address} vanished")
        return mailbox

    def find_mailbox(self, id_or_address: str) -> Mailbox | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM mailboxes WHERE id = ? OR address = ?",
                                   (id_or_address, id_or_address)).fetchone()
        return self._mailbox(row) if row else None

    def user(self, id_or_address: str) -> Mailbox:
        """A sending mailbox must be a user of the tenant with Exchange Online enabled."""
        mailbox = self.find_mailbox(id_or_address)
        if mailbox is None or not mailbox.is_user:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{id_or_address}' is invalid.")
        if not mailbox.rest_enabled:
            raise GraphError(404, "MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, "
                             "or is hosted on-premise.")
        return mailbox

    def recipient_mailbox(self, address: str, name: str) -> Mailbox:
        """A recipient's mailbox, made (not a user) the first time mail reaches the address."""
        mailbox = self.find_mailbox(address)
        if mailbox is None:
            self._db.execute("INSERT INTO mailboxes VALUES (?,?,?,?,?)",
                             (str(uuid.uuid4()), address, name or address.split("@")[0], 0, 1))
        return self._existing(address)

    def mailboxes(self) -> list[Mailbox]:
        with self._lock:
            return [self._mailbox(r) for r in self._db.execute("SELECT * FROM mailboxes ORDER BY address")]

    def resolve_folder(self, mailbox: Mailbox, folder: str) -> str:
        lowered = folder.lower()
        if lowered in FOLDERS:
            return lowered
        for name in FOLDERS:
            if mailbox.folder_id(name) == folder:
                return name
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    # -- messages ------------------------------------------------------------------------------------

    def insert(self, mailbox: Mailbox, folder: str, message: dict, attachments: list[dict],
               mime: bytes | None = None, copy_attachments_of: str | None = None) -> str:
        """A new row, under the store's lock or in a transaction; the id is new (ids change when a message
        moves), the immutable id is kept if given; ``copy_attachments_of``: share that message's attachments."""
        message_id = new_id()
        stamp = self.clock.iso()
        message = {**message, "id": message_id, "createdDateTime": message.get("createdDateTime", stamp),
                   "lastModifiedDateTime": stamp, "parentFolderId": mailbox.folder_id(folder),
                   IMMUTABLE_ID: message.get(IMMUTABLE_ID) or new_id("AAkALg")}
        if copy_attachments_of is None:
            message["hasAttachments"] = any(not a["isInline"] for a in attachments)
        self._db.execute("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?)",
                         (message_id, mailbox.id, folder, self.clock.time(), json.dumps(message), mime,
                          message[IMMUTABLE_ID], search_text(message)))
        self._db.executemany("INSERT INTO extended_properties VALUES (?,?,?)",
                             [(message_id, key, value) for key, value in extended_properties(message)])
        if copy_attachments_of is not None:
            self._db.execute(_COPY_ATTACHMENTS, (message_id, copy_attachments_of))
        for position, att in enumerate(attachments):
            if "path" in att:  # a large one from a file: streamed into its blob, never read whole
                _, content_ref = self._insert_attachment(message_id, position, att, None, att["size"], att["sha256"])
                with open(att["path"], "rb") as file:
                    self._write_blob(content_ref, file)
            else:
                self._insert_attachment(message_id, position, att, att["content"])
        self._changed()
        return message_id

    def _insert_attachment(self, message_id: str, position: int, att: dict, content: bytes | None = None,
                           size: int = 0, sha256: str = "") -> tuple[str, int]:
        """One attachment row and its contents row (given bytes, or a zero-filled blob of ``size`` bytes to
        stream into): (attachment id, contents row id)."""
        attachment_id = new_id("AAMkAGAtt")
        if content is not None:
            size, sha256 = len(content), hashlib.sha256(content).hexdigest()
            cursor = self._db.execute("INSERT INTO contents (content) VALUES (?)", (content,))
        else:
            cursor = self._db.execute("INSERT INTO contents (content) VALUES (zeroblob(?))", (size,))
        content_ref = int(cursor.lastrowid or 0)
        self._db.execute(
            "INSERT INTO attachments (id, message_id, position, name, content_type, size, is_inline, content_id, "
            "sha256, content_ref, attachment_type) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (attachment_id, message_id, position, att["name"], att["contentType"], size, int(att["isInline"]),
             att.get("contentId"), sha256, content_ref, att.get("attachmentType", "file")))
        return attachment_id, content_ref

    def load_draft(self, mailbox: Mailbox, message_id: str) -> dict:
        """A message that may still take attachments (its "id" is the current id, whichever was given)."""
        message, _ = self.load(mailbox, message_id)
        if not message.get("isDraft"):
            raise GraphError(400, "ErrorInvalidOperation", "Attachments can be added only to a draft.")
        return message

    def add_attachment(self, mailbox: Mailbox, message_id: str, att: dict, file=None, sha256: str = "") -> str:
        """Attach to a draft, from bytes (``att["content"]``) or streamed from a file (an upload session)."""
        with self.transaction():
            message = self.load_draft(mailbox, message_id)
            message_id = message["id"]
            position = self._db.execute("SELECT COUNT(*) FROM attachments WHERE message_id = ?",
                                        (message_id,)).fetchone()[0]
            if file is None:
                attachment_id, _ = self._insert_attachment(message_id, position, att, att["content"])
            else:
                attachment_id, content_ref = self._insert_attachment(message_id, position, att, None, att["size"],
                                                                     sha256)
                if att["size"]:
                    self._write_blob(content_ref, file)
            message["hasAttachments"] = message.get("hasAttachments") or not att["isInline"]
            message["lastModifiedDateTime"] = self.clock.iso()
            self._db.execute("UPDATE messages SET data = ? WHERE id = ?", (json.dumps(message), message_id))
            self._changed()
            return attachment_id

    def _write_blob(self, content_ref: int, file) -> None:
        """Stream an upload into its zero-filled blob (Python 3.11+); Python 3.10 has no blob API, so there
        the content is read whole."""
        blobopen = getattr(self._db, "blobopen", None)
        if blobopen is None:
            self._db.execute("UPDATE contents SET content = ? WHERE id = ?", (file.read(), content_ref))
            return
        with blobopen("contents", "content", content_ref) as blob:
            while block := file.read(_BLOB_STEP):
                blob.write(block)

    def attached_bytes(self, message_id: str) -> int:
        """The size of a stored message's attachments (the size limit counts them: ``limits.message_size``)."""
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(size), 0) FROM attachments WHERE message_id = ?",
                                    (message_id,)).fetchone()[0]

    def delete(self, mailbox: Mailbox, message_id: str) -> None:
        with self._lock:
            message, _ = self.load(mailbox, message_id)
            self.remove(message["id"])

    def create_draft(self, mailbox: Mailbox, folder: str, message: dict, attachments: list[dict],
                     mime: bytes | None = None, conversation_id: str | None = None,
                     copy_attachments_of: str | None = None) -> str:
        """A new draft; ``conversation_id``: the thread it answers (a reply or forward), else a new one;
        ``copy_attachments_of``: a message whose attachments it carries (a forward)."""
        draft = {"importance": "normal", "isRead": True, "flag": {"flagStatus": "notFlagged"}, **message,
                 "isDraft": True, "conversationId": conversation_id or new_id("AAQkAG"),
                 "internetMessageId": message.get("internetMessageId") or f"<{uuid.uuid4().hex}@{self.domain}>",
                 "sender": mailbox.as_recipient(), "from": message.get("from") or mailbox.as_recipient()}
        with self._lock:
            if copy_attachments_of is None:
                return self.insert(mailbox, folder, draft, attachments, mime)
            draft_id = self.insert(mailbox, folder, draft, [], mime, copy_attachments_of)
            for position, att in enumerate(attachments, start=len(self.attachments(draft_id))):  # after the copied
                self._insert_attachment(draft_id, position, att, att["content"])
            return draft_id

    def record_submission(self, mailbox: Mailbox, message: dict) -> None:
        """Count a submission under each of the message's single-value extended properties (``submissions``)."""
        now = self.clock.time()
        self._db.executemany("INSERT INTO submissions VALUES (?,?,?,?)",
                             [(mailbox.id, now, key, value) for key, value in extended_properties(message)])

    def move(self, mailbox: Mailbox, message_id: str, folder: str) -> str:
        """Move to another folder: a new id (as Exchange gives), the immutable id kept. Returns the new id."""
        with self.transaction():
            message, _ = self.load(mailbox, message_id)
            old_id, new = message["id"], new_id()
            message.update(id=new, parentFolderId=mailbox.folder_id(folder), lastModifiedDateTime=self.clock.iso())
            self._db.execute("UPDATE messages SET id = ?, folder = ?, data = ? WHERE id = ?",
                             (new, folder, json.dumps(message), old_id))
            for table in ("attachments", "extended_properties"):
                self._db.execute(f"UPDATE {table} SET message_id = ? WHERE message_id = ?", (new, old_id))  # noqa: S608
            self._changed()
            return new

    def remove(self, message_id: str) -> None:
        """Delete a message by its current id, with its properties and attachments (inside a transaction)."""
        self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
        self._db.execute("DELETE FROM extended_properties WHERE message_id = ?", (message_id,))
        refs = [r[0] for r in self._db.execute("SELECT DISTINCT content_ref FROM attachments WHERE message_id = ? "
                                               "AND content_ref IS NOT NULL", (message_id,))]
        self._db.execute("DELETE FROM attachments WHERE message_id = ?", (message_id,))
        for ref in refs:  # bytes go with the last attachment that points at them
            self._db.execute("DELETE FROM contents WHERE id = ? AND NOT EXISTS (SELECT 1 FROM attachments WHERE "
                             "content_ref = ?)", (ref, ref))
        self._changed()

    def update(self, mailbox: Mailbox, message_id: str, changes: dict) -> None:
        """PATCH: new values for some properties of a stored message (its id stays). Read and written in one
        transaction, so two updates at once cannot lose one."""
        with self.transaction():
            message, _ = self.load(mailbox, message_id)
            message.update(changes, lastModifiedDateTime=self.clock.iso())
            self._db.execute("UPDATE messages SET data = ?, search_text = ? WHERE id = ?",
                             (json.dumps(message), search_text(message), message["id"]))
            if "singleValueExtendedProperties" in changes:  # the index $filter reads
                self._db.execute("DELETE FROM extended_properties WHERE message_id = ?", (message["id"],))
                self._db.executemany("INSERT INTO extended_properties VALUES (?,?,?)",
                                     [(message["id"], key, value) for key, value in extended_properties(message)])
            self._changed()

    def load(self, mailbox: Mailbox, message_id: str) -> tuple[dict, str]:
        with self._lock:
            # By id or immutable id (both indexed), then the mailbox: "+" keeps SQLite from scanning the
            # whole mailbox through its folder index instead, which grows with every message it holds.
            row = self._db.execute("SELECT data, folder FROM messages WHERE (id = ? OR immutable_id = ?) AND "
                                   "+mailbox_id = ?", (message_id, message_id, mailbox.id)).fetchone()
        if row is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return json.loads(row[0]), row[1]

    def attachments(self, message_id: str, with_content: bool = False) -> list[dict]:
        content = CONTENT if with_content else "NULL"
        with self._lock:
            rows = self._db.execute(  # the column is one of two fixed expressions; the id is bound
                f"SELECT a.id, a.name, a.content_type, a.size, a.is_inline, a.content_id, a.sha256, a.attachment_type, "  # noqa: S608
                f"{content} FROM attachments a WHERE a.message_id = ? ORDER BY a.position", (message_id,)).fetchall()
        out = []
        for att_id, name, content_type, size, inline, cid, sha256, kind, data in rows:
            item = {"id": att_id, "name": name, "contentType": content_type, "size": size,
                    "isInline": bool(inline), "contentId": cid, "sha256": sha256, "attachmentType": kind or "file"}
            if with_content:
                item["content"] = bytes(data or b"")
            out.append(item)
        return out

    def list_folder(self, mailbox: Mailbox, folder: str, top: int | None = None) -> list[dict]:
        return self.page(mailbox, [folder], 0, top if top is not None else -1)

    def _folders_clause(self, folders: list[str]) -> str:
        return f"folder IN ({','.join('?' * len(folders))})"

    def page(self, mailbox: Mailbox, folders: list[str], skip: int, limit: int) -> list[dict]:
        """Newest first, ``limit`` after ``skip``, from SQLite's index (no other row is read)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT data FROM messages WHERE mailbox_id = ? AND {self._folders_clause(folders)} "  # noqa: S608
                "ORDER BY created DESC LIMIT ? OFFSET ?", (mailbox.id, *folders, limit, skip)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def unread(self, mailbox: Mailbox, folder: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages WHERE mailbox_id = ? AND folder = ? AND "
                                    "json_extract(data, '$.isRead') = 0", (mailbox.id, folder)).fetchone()[0]

    def count(self, mailbox: Mailbox, folders: list[str]) -> int:
        with self._lock:
            return self._db.execute(
                f"SELECT COUNT(*) FROM messages WHERE mailbox_id = ? AND {self._folders_clause(folders)}",  # noqa: S608
                (mailbox.id, *folders)).fetchone()[0]

    def attachment_names(self, mailbox: Mailbox) -> dict[str, list[str]]:
        """{message id: attachment names} for one mailbox (a search by attachment name reads them)."""
        with self._lock:
            rows = self._db.execute("SELECT a.message_id, a.name FROM attachments a JOIN messages m ON "
                                    "m.id = a.message_id WHERE m.mailbox_id = ?", (mailbox.id,)).fetchall()
        names: dict[str, list[str]] = {}
        for message_id, name in rows:
            names.setdefault(message_id, []).append(name)
        return names

    def find_by_property(self, mailbox: Mailbox, folders: list[str], property_id: str, value: str) -> list[dict]:
        """$filter=singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...'), from the index."""
        with self._lock:
            rows = self._db.execute(
                "SELECT m.data FROM extended_properties p JOIN messages m ON m.id = p.message_id WHERE "  # noqa: S608
                f"p.property_id = ? AND p.value = ? AND m.mailbox_id = ? AND m.{self._folders_clause(folders)} "
                "ORDER BY m.created DESC", (property_key(property_id), value, mailbox.id, *folders)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def submissions(self, property_id: str) -> dict[str, int]:
        """How many times a message carrying each value of this extended property was submitted."""
        with self._lock:
            rows = self._db.execute("SELECT value, COUNT(*) FROM submissions WHERE property_id = ? GROUP BY value",
                                    (property_key(property_id),)).fetchall()
        return dict(rows)

    def find_message(self, message_id: str) -> tuple[Mailbox, dict, str] | None:
        """For the inspection API: a message by id (or immutable id) in any mailbox."""
        with self._lock:
            row = self._db.execute("SELECT mailbox_id, data, folder, mime FROM messages WHERE id = ? OR "
                                   "immutable_id = ?", (message_id, message_id)).fetchone()
        mailbox = self.find_mailbox(row[0]) if row is not None else None
        if row is None or mailbox is None:
            return None
        return mailbox, json.loads(row[1]), row[2]

    def raw_mime(self, message_id: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT mime FROM messages WHERE id = ?", (message_id,)).fetchone()
        return bytes(row[0]) if row and row[0] else None

    def clear(self) -> None:
        """Every message gone, and every mailbox that is not a user's."""
        with self._lock:
            self._db.executescript("DELETE FROM messages; DELETE FROM attachments; DELETE FROM extended_properties; "
                                   "DELETE FROM submissions; DELETE FROM contents; DELETE FROM queue; "
                                   "DELETE FROM departures; "
                                   "DELETE FROM mailboxes WHERE is_user = 0;")
            self._changed()

    def keep_users(self, addresses: set[str]) -> None:
        """Every user not in ``addresses`` is a user no more (a reset: users a test added must not make their
        domain the tenant's for the next one). Their empty mailbox keeps its id until the next ``clear()``, so a
        delta link into it still reads as expired, not as foreign."""
        with self._lock:
            kept = {address.lower() for address in addresses}
            for (address,) in self._db.execute("SELECT address FROM mailboxes WHERE is_user = 1").fetchall():
                if address.lower() not in kept:
                    self._db.execute("UPDATE mailboxes SET is_user = 0 WHERE address = ?", (address,))
            self.user_domains = {_domain(row[0]) for row in self._db.execute(
                "SELECT address FROM mailboxes WHERE is_user = 1")}
            self._changed()

    def clear_mailbox(self, mailbox: Mailbox) -> int:
        """Empty every folder of one mailbox and forget what it submitted; a recipient-only mailbox goes."""
        with self.transaction():
            ids = [r[0] for r in self._db.execute("SELECT id FROM messages WHERE mailbox_id = ?", (mailbox.id,))]
            for message_id in ids:
                self.remove(message_id)
            for table in ("submissions", "queue", "departures"):
                self._db.execute(f"DELETE FROM {table} WHERE mailbox_id = ?", (mailbox.id,))  # noqa: S608
            self._db.execute("DELETE FROM mailboxes WHERE id = ? AND is_user = 0", (mailbox.id,))
            self._changed()
            return len(ids)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def property_key(property_id: str) -> str:
    """Extended property ids compare without regard to case or spacing ("String {GUID} Name x")."""
    return " ".join(str(property_id).split()).lower()


def extended_properties(message: dict) -> list[tuple[str, str]]:
    return [(property_key(p.get("id", "")), str(p.get("value", "")))
            for p in message.get("singleValueExtendedProperties") or [] if isinstance(p, dict)]
