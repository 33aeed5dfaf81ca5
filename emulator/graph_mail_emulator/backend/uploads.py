"""Upload sessions for large attachments, as Outlook documents them.

A session accepts byte ranges strictly in order at a pre-authenticated URL; the bytes wait in a
file until the last range arrives, then become an attachment of the draft.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graph_mail_emulator.backend.clock import Clock
from graph_mail_emulator.errors import GraphError
from graph_mail_emulator.private import create_private

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


@dataclass
class UploadSession:
    id: str
    token: str
    mailbox_id: str
    message_id: str
    item: dict  # name, size, contentType, isInline, contentId
    expires_at: float
    path: Path
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    @property
    def expiration(self) -> str:
        return dt.datetime.fromtimestamp(self.expires_at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")

    def status(self) -> dict:
        return {"expirationDateTime": self.expiration, "nextExpectedRanges": [str(self.received)]}


class UploadSessions:
    """Open sessions by id; chunk bytes go to a file under ``directory`` until the upload completes."""

    def __init__(self, directory: Path, clock: Clock):
        self.directory = directory
        self.clock = clock
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, UploadSession] = {}
        self._lock = threading.Lock()
        self.issued_tokens: list[str] = []  # every upload URL token handed out, for leak checks in tests

    def open(self, mailbox_id: str, message_id: str, item: dict, lifetime: float) -> UploadSession:
        session_id = "AAMkAGUpl" + secrets.token_urlsafe(18)
        session = UploadSession(session_id, secrets.token_urlsafe(32), mailbox_id, message_id, item,
                                self.clock.time() + lifetime, self.directory / f"{session_id}.part")
        create_private(session.path)  # the attachment's bytes wait here
        with self._lock:
            self._sessions[session_id] = session
            self.issued_tokens.append(session.token)
        return session

    def get(self, session_id: str, token: str | None) -> UploadSession:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise GraphError(404, "ErrorItemNotFound", "The upload session was not found; it was completed, "
                             "cancelled, or never existed.")
        if not token or not secrets.compare_digest(token, session.token):
            raise GraphError(401, "InvalidAuthenticationToken", "The authtoken in the upload URL is missing or "
                             "invalid.")
        if self.clock.time() > session.expires_at:
            raise GraphError(401, "InvalidAuthenticationToken", f"The upload session expired at "
                             f"{session.expiration}; create a new one.")
        return session

    def write(self, session: UploadSession, content_range: str | None, body: bytes) -> bool:
        """Append one range; True when the attachment is complete. Gaps, overlaps and bad ranges fail."""
        size = session.item["size"]
        found = _CONTENT_RANGE.match((content_range or "").strip())
        if not found:
            raise GraphError(400, "InvalidContentRange", "The Content-Range header is missing or malformed; "
                             "expected 'bytes {start}-{end}/{total}'.")
        start, end, total = map(int, found.groups())
        if total != size:
            raise GraphError(400, "InvalidContentRange", f"The total in Content-Range ({total}) differs from the "
                             f"size given when the session was created ({size}).")
        if end < start or end >= size or end - start + 1 != len(body):
            raise GraphError(400, "InvalidContentRange", f"The range {start}-{end} does not match the "
                             f"{len(body)} bytes in the request.")
        if start != session.received:
            kind = "leaves a gap" if start > session.received else "overlaps bytes already received"
            raise GraphError(416, "InvalidRange", f"The range starting at {start} {kind}; the next expected "
                             f"byte is {session.received}.")
        with session.path.open("ab") as file:
            file.write(body)
        session.digest.update(body)
        session.received = end + 1
        return session.received == size

    def close(self, session: UploadSession) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
        session.path.unlink(missing_ok=True)

    def for_message(self, message_id: str) -> list[UploadSession]:
        with self._lock:
            return [s for s in self._sessions.values() if s.message_id == message_id]

    def pending_bytes(self, message_id: str) -> int:
        return sum(s.item["size"] for s in self.for_message(message_id))

    def clear(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
            self.issued_tokens.clear()
        for session in sessions:
            session.path.unlink(missing_ok=True)
