"""A received mail's attachments, streamed to a local folder or object storage: chunk by chunk from Graph's
``$value`` (a 100 MB attachment never sits in memory), within limits, under safe names.

- Which: a name pattern and content types (globs, any case); inline images only when asked; an attached
  mail (item attachment) as its MIME, ``.eml`` (a contact ``.vcf``, an event ``.ics``), never unpacked; a
  link to a cloud file (reference attachment) has no bytes and is reported, not saved.
- Names: one safe path component each (``mail/safe_names.py``), unique within the mail, the same on every
  try: the attachments are taken in the order of their ids, so a retry writes the same names and
  overwrites only its own files.
- Limits, checked on Graph's metadata before a byte is written, and again on the bytes as they arrive (the
  metadata comes from the sender too): how many, how large each, how large all together.

No Airflow here: the destination is a ``pathlib.Path`` or any path object of the same shape (Airflow's
``ObjectStoragePath``, universal-pathlib's ``UPath``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
from dataclasses import dataclass
from urllib.parse import quote

import requests

from airflow_graph_mail.errors import GraphConfigError, GraphConnectionError, InboundLimitError
from airflow_graph_mail.graph.inbound import MailboxReader
from airflow_graph_mail.mail.attachments import MB, guess_content_type
from airflow_graph_mail.mail.inbound import clean
from airflow_graph_mail.mail.safe_names import safe_file_name, unique_names

log = logging.getLogger(__name__)

FILE = "#microsoft.graph.fileAttachment"
ITEM = "#microsoft.graph.itemAttachment"
REFERENCE = "#microsoft.graph.referenceAttachment"
CHUNK_BYTES = 1 * MB
DOWNLOAD_TRIES = 3  # a connection dropped in the middle of the bytes: start that file again
_ITEM_EXTENSIONS = {"text/calendar": ".ics", "text/vcard": ".vcf", "text/x-vcard": ".vcf"}


@dataclass(frozen=True)
class SaveOptions:
    """What to save and the limits (every size in bytes)."""

    name_patterns: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()
    include_inline: bool = False
    include_items: bool = True
    max_attachments: int = 100
    max_attachment_bytes: int = 150 * MB
    max_total_bytes: int = 1024 * MB
    chunk_bytes: int = CHUNK_BYTES

    def __post_init__(self):
        for name in ("max_attachments", "max_attachment_bytes", "max_total_bytes", "chunk_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise GraphConfigError(f"{name}: expected a whole number, 1 or more, got {value!r}")
        for name in ("name_patterns", "content_types"):
            for pattern in getattr(self, name):
                if not isinstance(pattern, str) or not pattern.strip():
                    raise GraphConfigError(f"{name}: {pattern!r} is not a pattern (e.g. '*.csv', 'text/*')")

    def wants(self, attachment: dict) -> tuple[bool, str]:
        """(save it, why not)."""
        kind = attachment.get("@odata.type") or FILE
        name = clean(attachment.get("name"), 255)
        if kind == REFERENCE:
            return False, "a link to a cloud file, which has no bytes to save"
        if kind == ITEM and not self.include_items:
            return False, "an attached item (include_items is off)"
        if kind not in (FILE, ITEM):
            return False, f"an attachment of an unknown kind ({clean(kind, 80)})"
        if attachment.get("isInline") and not self.include_inline:
            return False, "an inline image (include_inline is off)"
        if self.name_patterns and not any(fnmatch.fnmatch(name.casefold(), p.casefold()) for p in self.name_patterns):
            return False, "its name matches none of the name patterns"
        content_type = clean(attachment.get("contentType"), 255).split(";")[0].strip().lower() or \
            (guess_content_type(name) if kind == FILE else "message/rfc822")
        if self.content_types and not any(fnmatch.fnmatch(content_type, p.lower()) for p in self.content_types):
            return False, f"its content type {content_type!r} matches none of the content types"
        return True, ""


@dataclass(frozen=True)
class SavedFile:
    path: str  # where it was written (a local path or a URI)
    name: str  # the attachment's name as the sender gave it (cleaned)
    file_name: str  # the safe name it was saved under
    content_type: str
    size: int  # bytes written
    sha256: str
    attachment_id: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _size(attachment: dict) -> int:
    size = attachment.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else 0


def plan(attachments: list[dict], options: SaveOptions) -> list[tuple[dict, str]]:
    """(attachment, file name) for each attachment to save, ids in order; the limits checked on metadata."""
    chosen = []
    for attachment in sorted(attachments, key=lambda a: str(a.get("id"))):
        wanted, why = options.wants(attachment)
        if not wanted:
            log.info("Not saving attachment %r: %s", clean(attachment.get("name"), 80), why)
            continue
        chosen.append(attachment)
    if len(chosen) > options.max_attachments:
        raise InboundLimitError(f"max_attachments: the mail has {len(chosen)} attachments to save, more than "
                                f"{options.max_attachments}; raise max_attachments or narrow name_pattern")
    for attachment in chosen:
        if _size(attachment) > options.max_attachment_bytes:
            raise InboundLimitError(f"max_attachment_bytes: attachment {clean(attachment.get('name'), 80)!r} is "
                                    f"{_size(attachment):,} bytes, more than {options.max_attachment_bytes:,}")
    total = sum(_size(a) for a in chosen)
    if total > options.max_total_bytes:
        raise InboundLimitError(f"max_total_bytes: the attachments to save are {total:,} bytes together, more "
                                f"than {options.max_total_bytes:,}")
    names = []
    for position, attachment in enumerate(chosen, 1):
        kind = attachment.get("@odata.type") or FILE
        fallback = f"attachment-{position}" + (".eml" if kind == ITEM else "")
        names.append(safe_file_name(attachment.get("name"), fallback))
    return list(zip(chosen, unique_names(names), strict=True))


class _Counter:
    """Bytes written so far, against the limits (the bytes may be more than the metadata said)."""

    def __init__(self, options: SaveOptions):
        self.options = options
        self.total = 0

    def add(self, name: str, file_bytes: int, chunk: int) -> None:
        self.total += chunk
        if file_bytes > self.options.max_attachment_bytes:
            raise InboundLimitError(f"max_attachment_bytes: attachment {name!r} sent more than "
                                    f"{self.options.max_attachment_bytes:,} bytes; not saved")
        if self.total > self.options.max_total_bytes:
            raise InboundLimitError(f"max_total_bytes: the attachments sent more than "
                                    f"{self.options.max_total_bytes:,} bytes together; stopped")


def save_attachments(reader: MailboxReader, message_id: str, folder, options: SaveOptions, *,
                     overwrite: bool = True) -> list[SavedFile]:
    """Save the message's attachments into ``folder`` (a path object; created when missing) and return what
    was written, in order. ``overwrite=False``: a file already there is an error (nothing is replaced)."""
    chosen = plan(reader.attachments(message_id), options)
    targets = [(attachment, name, folder / name) for attachment, name in chosen]
    if not overwrite:
        present = [str(path) for _, _, path in targets if path.exists()]
        if present:
            raise InboundLimitError(f"overwrite: {', '.join(present[:5])} already exist(s); give each mail its own "
                                    "folder (e.g. the run id in destination) or overwrite=True")
    if targets:
        folder.mkdir(parents=True, exist_ok=True)
    counter = _Counter(options)
    saved = []
    for attachment, name, path in targets:
        saved.append(_save_one(reader, message_id, attachment, name, path, counter))
        log.info("Saved attachment %s (%s bytes) to %s", name, f"{saved[-1].size:,}", saved[-1].path)
    return saved


def _save_one(reader: MailboxReader, message_id: str, attachment: dict, name: str, path,
              counter: _Counter) -> SavedFile:
    """Stream one attachment's ``$value`` to ``path``; a local file appears whole or not at all."""
    call = reader.call()
    url = f"{call.message_path(message_id)}/attachments/{quote(attachment['id'], safe='')}/$value"
    local = not hasattr(path, "fs")  # a pathlib.Path; a universal-pathlib path (file:// too) has its fsspec fs
    attempt = 0
    while True:
        attempt += 1
        written = counter.total
        response = reader.client.transport.request(call, "GET", url, stream=True)
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if attachment.get("@odata.type") == ITEM and not name.lower().endswith((".eml", ".ics", ".vcf")):
            name = name + _ITEM_EXTENSIONS.get(content_type, ".eml")
            path = path.with_name(name) if local else path.parent / name
        target = path.with_name(f".{name}.part") if local else path
        digest, size = hashlib.sha256(), 0
        try:
            with response, target.open("wb") as out:
                for chunk in response.iter_content(counter.options.chunk_bytes):
                    size += len(chunk)
                    counter.add(name, size, len(chunk))
                    digest.update(chunk)
                    out.write(chunk)
        except requests.RequestException as err:
            counter.total = written
            if local:
                target.unlink(missing_ok=True)
            delay = call.budget.delay()
            if attempt == DOWNLOAD_TRIES or delay is None:
                raise GraphConnectionError("GET", url, err) from err
            log.warning("Attachment %s: the connection broke after %s bytes (%s); downloading it again in %.1fs",
                        name, f"{size:,}", err, delay)
            call.budget.wait(delay)
            continue
        except BaseException:
            if local:
                target.unlink(missing_ok=True)
            raise
        if local:
            os.replace(target, path)
        return SavedFile(str(path), clean(attachment.get("name"), 255), name,
                         content_type or clean(attachment.get("contentType"), 255), size, digest.hexdigest(),
                         attachment["id"])
