"""JSON request bodies whose attachments are base64-encoded while they are sent, never held whole."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

from airflow_graph_mail.errors import AttachmentReadError, GraphMailError
from airflow_graph_mail.mail.attachments import Attachment

# Raw bytes encoded per step: a multiple of 3, so the pieces join into one valid base64 string.
_RAW_STEP = 768 * 1024


def base64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def iter_base64(stream, size: int, name: str = "attachment", step: int = _RAW_STEP) -> Iterator[bytes]:
    """base64 of exactly ``size`` bytes of a stream, piece by piece (whole 3-byte groups until the last).

    A source that shrank since its size was taken raises instead of leaving the request short.
    """
    pending = b""
    remaining = size
    while remaining:
        block = stream.read(min(step, remaining))
        if not block:
            raise AttachmentReadError(f"{name} changed while it was being sent: {size - remaining} of {size} "
                                      "bytes read")
        remaining -= len(block)
        block = pending + block
        cut = len(block) - len(block) % 3
        pending = block[cut:]
        if cut:
            yield base64.b64encode(block[:cut])
    if pending:
        yield base64.b64encode(pending)


class StreamingJson:
    """A JSON document in which some strings are attachments' base64 content, produced on the fly.

    ``len()`` is exact before anything is read, so the request goes out with Content-Length (Graph
    wants it) and the 4 MB decision is made without encoding anything. Each iteration reopens the
    attachments, so the body can be sent again (after a token refresh).
    """

    def __init__(self, document, attachments: dict[str, Attachment]):
        """``document`` holds placeholder strings; ``attachments`` maps each placeholder to an Attachment."""
        text = json.dumps(document, ensure_ascii=False).encode("utf-8")
        self._parts: list[bytes | Attachment] = []
        if not attachments:  # the common small mail: one piece, nothing to search
            self._parts, self._length = [text], len(text)
            return
        for placeholder, attachment in attachments.items():
            marker = json.dumps(placeholder).encode("ascii")
            before, found, text = text.partition(marker)
            if not found:
                raise GraphMailError(f"internal: placeholder {placeholder} is not in the document")
            self._parts += [before + b'"', attachment]
            text = b'"' + text
        self._parts.append(text)
        self._length = sum(len(p) if isinstance(p, bytes) else base64_length(p.size) for p in self._parts)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        for part in self._parts:
            if isinstance(part, bytes):
                yield part
                continue
            with part.open() as stream:
                yield from iter_base64(stream, part.size, part.name)


def placeholder() -> str:
    return f"@@attachment-{uuid.uuid4().hex}@@"


def message_document(message, *, with_attachments: bool = True) -> tuple[dict, dict[str, Attachment]]:
    """A Message -> (Graph message JSON with placeholders for contentBytes, placeholder -> Attachment)."""
    graph = message.to_graph(with_attachments=False)
    streams: dict[str, Attachment] = {}
    if with_attachments and message.attachments:
        graph["attachments"] = []
        for attachment in message.attachments:
            key = placeholder()
            streams[key] = attachment
            graph["attachments"].append({**attachment.graph_metadata(), "contentBytes": key})
    return graph, streams


def attachment_document(attachment) -> StreamingJson:
    """The body of POST .../attachments for one small attachment."""
    key = placeholder()
    return StreamingJson({**attachment.graph_metadata(), "contentBytes": key}, {key: attachment})
