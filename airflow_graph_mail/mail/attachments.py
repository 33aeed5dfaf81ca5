"""Attachment sources (a file path, or bytes with a name) -> name, type, size and a stream."""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from airflow_graph_mail.mail.errors import MessageValidationError


def guess_content_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


@dataclass
class Attachment:
    """One file attachment; content is read only when the message is built, never held twice."""

    name: str
    path: Path | None = None
    data: bytes | None = field(default=None, repr=False)
    content_type: str = ""
    is_inline: bool = False
    content_id: str | None = None

    def __post_init__(self):
        if not self.name:
            raise MessageValidationError("attachments", "an attachment needs a file name")
        if (self.path is None) == (self.data is None):
            raise MessageValidationError("attachments", f"{self.name}: give either a path or data")
        self.content_type = self.content_type or guess_content_type(self.name)

    @classmethod
    def from_path(cls, path: str | os.PathLike, **kwargs) -> Attachment:
        """Checks the file now, so a missing report fails the task before anything is sent."""
        file = Path(path).expanduser()
        if not file.exists():
            raise MessageValidationError("attachments", f"file not found: {file}")
        if not file.is_file():
            raise MessageValidationError("attachments", f"not a regular file: {file}")
        if not os.access(file, os.R_OK):
            raise MessageValidationError("attachments", f"file is not readable: {file}")
        return cls(name=kwargs.pop("name", None) or file.name, path=file, **kwargs)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data) if self.data is not None else self.path.open("rb")

    def read(self) -> bytes:
        with self.open() as stream:
            return stream.read()

    def to_graph(self) -> dict:
        item = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.read()).decode("ascii"),
        }
        if self.is_inline:
            item["isInline"] = True
        if self.content_id:
            item["contentId"] = self.content_id
        return item


def as_attachment(source) -> Attachment:
    """Accept an Attachment, a path, or a (name, bytes-or-text) pair as users naturally write them."""
    if isinstance(source, Attachment):
        return source
    if isinstance(source, (str, os.PathLike)):
        if not str(source).strip():
            raise MessageValidationError("attachments", "empty attachment path")
        return Attachment.from_path(source)
    if isinstance(source, tuple) and len(source) == 2:
        name, content = source
        if isinstance(content, str):
            content = content.encode("utf-8")
        if not isinstance(content, (bytes, bytearray)):
            raise MessageValidationError("attachments", f"{name}: content must be bytes or text")
        return Attachment(name=str(name), data=bytes(content))
    raise MessageValidationError(
        "attachments", f"cannot attach {type(source).__name__}: give a file path or a (name, bytes) pair"
    )
