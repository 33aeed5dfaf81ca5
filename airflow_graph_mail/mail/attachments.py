"""Attachment sources -> name, content type, size and a stream that is opened only when sending.

Sources: a local path or glob pattern; ``(name, bytes | text)`` or a dict (what XCom carries);
an fsspec URI (``s3://...``, ``abfs://...``, ``file://...``) or an Airflow ``ObjectStoragePath``.
Content is never read here: a 100 MB report is streamed from its source chunk by chunk.
"""

from __future__ import annotations

import base64
import glob
import io
import mimetypes
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from airflow_graph_mail.errors import MessageValidationError
from airflow_graph_mail.mail.graph_shape import clean_base64
from airflow_graph_mail.mail.headers import CONTROL
from airflow_graph_mail.redact import redact_url_secrets

MB = 1024 * 1024
# Graph takes at most 150 MB per attachment (through an upload session).
MAX_ATTACHMENT_BYTES = 150 * MB
# A glob pattern matching more files than this is a mistake (a pattern too wide), not a report.
MAX_GLOB_MATCHES = 500
_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(?:\s*;.*)?$")
_GLOB_CHARS = re.compile(r"[*?\[]")
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def guess_content_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def content_id_for(name: str) -> str:
    """A content id from a file name: 'charts/Sales Q3.png' -> 'Sales_Q3.png' (usable in cid: URLs)."""
    base = re.split(r"[\\/]", str(name))[-1]
    return re.sub(r"[^A-Za-z0-9._@-]", "_", base) or "image"


def cid(name: str) -> str:
    """The src for an inline image in an HTML body: cid('charts/sales.png') -> 'cid:sales.png'."""
    return "cid:" + content_id_for(name)


@dataclass
class Attachment:
    """One file attachment. ``open()`` gives a fresh binary stream each time it is called."""

    name: str
    size: int
    opener: Callable[[], BinaryIO] = field(repr=False, compare=False)
    content_type: str = ""
    is_inline: bool = False
    content_id: str | None = None
    source: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise MessageValidationError("attachments", f"{self.source or 'an attachment'}: needs a file name")
        _check_name(self.name)
        self.content_type = _content_type(self.name, self.content_type) or guess_content_type(self.name)
        self.is_inline = _flag(self.name, "is_inline", self.is_inline)
        if self.content_id is not None and not _valid_content_id(self.content_id):
            raise MessageValidationError("attachments", f"{self.name}: content_id {self.content_id!r} must be "
                                         "text without spaces, angle brackets or control characters")
        if self.is_inline and not self.content_id:
            self.content_id = content_id_for(self.name)
        if self.size > MAX_ATTACHMENT_BYTES:
            raise MessageValidationError(
                "attachments", f"{self.name} is {self.size / MB:.1f} MB; Graph accepts at most 150 MB per "
                "attachment: split it, compress it, or share a link instead")

    # -- constructors --------------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, name: str, data: bytes | bytearray | str, **kwargs) -> Attachment:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MessageValidationError("attachments", f"{name}: content must be bytes or text, "
                                         f"not {type(data).__name__}")
        data = bytes(data)
        return cls(name=str(name), size=len(data), opener=lambda: io.BytesIO(data), **kwargs)

    @classmethod
    def from_path(cls, path: str | os.PathLike, **kwargs) -> Attachment:
        """Checks the file now, so a missing report fails the task before anything is sent."""
        file = Path(path).expanduser()
        if not file.exists():
            raise MessageValidationError("attachments", f"file not found: {file}")
        if not file.is_file():
            raise MessageValidationError("attachments", f"not a regular file: {file}")
        try:  # open it now (os.access says yes to root for any file): a locked-down report fails before sending
            with file.open("rb"):
                pass
        except OSError as err:
            raise MessageValidationError("attachments", f"file is not readable: {file} ({err.strerror})") from None
        name = kwargs.pop("name", None) or file.name
        return cls(name=name, size=file.stat().st_size, opener=lambda: file.open("rb"), source=str(file), **kwargs)

    @classmethod
    def from_fs(cls, fs, path: str, display: str, **kwargs) -> Attachment:
        """A file on an fsspec filesystem (what ObjectStoragePath wraps); streamed with ``fs.open``."""
        try:
            info = fs.info(path)
        except FileNotFoundError:
            raise MessageValidationError("attachments", f"file not found: {display}") from None
        except OSError as err:
            raise MessageValidationError("attachments", f"cannot read {display}: {err}") from None
        if info.get("type") not in (None, "file"):
            raise MessageValidationError("attachments", f"not a regular file: {display}")
        name = kwargs.pop("name", None) or path.rstrip("/").rsplit("/", 1)[-1]
        size = info.get("size")
        if size is None:
            raise MessageValidationError("attachments", f"{display}: the storage does not report a size")
        return cls(name=name, size=int(size), opener=lambda: fs.open(path, "rb"), source=display, **kwargs)

    # -- content -------------------------------------------------------------------------------------

    def open(self) -> BinaryIO:
        return self.opener()

    def read(self) -> bytes:
        """The whole content; only for small attachments (MIME building, tests)."""
        with self.open() as stream:
            return stream.read()

    def _inline_fields(self) -> dict:
        return {**({"isInline": True} if self.is_inline else {}),
                **({"contentId": self.content_id} if self.content_id else {})}

    def graph_metadata(self) -> dict:
        """Graph's fileAttachment without contentBytes (the sender streams those in)."""
        return {"@odata.type": "#microsoft.graph.fileAttachment", "name": self.name,
                "contentType": self.content_type, **self._inline_fields()}

    def to_graph(self) -> dict:
        """fileAttachment with contentBytes, all in memory; the client streams instead."""
        return {**self.graph_metadata(), "contentBytes": base64.b64encode(self.read()).decode("ascii")}

    def upload_item(self) -> dict:
        """createUploadSession's AttachmentItem."""
        return {"attachmentType": "file", "name": self.name, "size": self.size, "contentType": self.content_type,
                **self._inline_fields()}


def _valid_content_id(content_id) -> bool:
    return isinstance(content_id, str) and bool(content_id) and not CONTROL.search(content_id) \
        and not re.search(r"[\s<>]", content_id)


def _check_name(name: str) -> None:
    found = CONTROL.search(name)
    if found:
        raise MessageValidationError("attachments", f"{name!r}: a file name must not contain a line break or "
                                     f"control character ({found.group()!r}); give another name with 'name'")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a file name in another encoding, read through os.fsdecode's escapes
        shown = name.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise MessageValidationError("attachments", f"{shown!r}: the file name is not valid UTF-8 (a name from "
                                     "a file system in another encoding); give a name with 'name'") from None


def _content_type(name: str, value) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or CONTROL.search(value) or not _CONTENT_TYPE.match(value.strip()):
        raise MessageValidationError("attachments", f"{name}: content_type {value!r} is not a media type like "
                                     "text/csv")
    return value.strip()


def _flag(name: str, option: str, value) -> bool:
    """A yes/no option: a bool, or "true"/"false" as a template renders it; anything else is refused."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise MessageValidationError("attachments", f"{name}: {option} must be true or false, got {value!r}")


# -- sources ------------------------------------------------------------------------------------------

_OPTIONS = ("name", "content_type", "is_inline", "content_id")


def _fsspec_sources(uri: str, options: dict, limit: int) -> list[Attachment]:
    try:
        from fsspec.core import url_to_fs
    except ImportError:  # pragma: no cover - fsspec comes with Airflow
        raise MessageValidationError("attachments",
                                     f"{redact_url_secrets(uri)}: install fsspec to attach from URIs") from None
    display = redact_url_secrets(uri)
    try:
        fs, path = url_to_fs(uri)
    except (ImportError, ValueError) as err:
        raise MessageValidationError("attachments", f"{display}: no filesystem for this URI ({err}); install "
                                     "the fsspec package for its scheme (s3fs, adlfs, gcsfs, ...)") from None
    return _fs_sources(fs, path, display, uri.split("://", 1)[0] + "://", options, limit)


def _check_matches(display: str, matches: list, limit: int) -> None:
    if not matches:
        raise MessageValidationError("attachments", f"the pattern {display} matched no file")
    if len(matches) > limit:
        raise MessageValidationError("attachments", f"the pattern {display} matched {len(matches)} files, more "
                                     f"than the limit of {limit}; narrow the pattern (or raise max_glob_matches)")


def _fs_sources(fs, path: str, display: str, prefix: str, options: dict, limit: int) -> list[Attachment]:
    """A file or a glob pattern on an fsspec filesystem; ``prefix`` names the matches in messages."""
    if _GLOB_CHARS.search(path):
        matches = sorted(fs.glob(path))
        _check_matches(display, matches, limit)
        return [Attachment.from_fs(fs, p, prefix + p.lstrip("/"), **options) for p in matches]
    return [Attachment.from_fs(fs, path, display, **options)]


def _path_sources(text: str, options: dict, limit: int) -> list[Attachment]:
    if not text.strip():
        raise MessageValidationError("attachments", "empty attachment path")
    if "\x00" in text:
        raise MessageValidationError("attachments", f"{text!r}: a path cannot contain NUL")
    if _GLOB_CHARS.search(text) and not Path(text).expanduser().exists():
        matches = sorted(p for p in glob.glob(os.path.expanduser(text), recursive=True) if os.path.isfile(p))
        _check_matches(text, matches, limit)
        if options.get("name") and len(matches) > 1:
            raise MessageValidationError("attachments", f"the pattern {text} matched {len(matches)} files; "
                                         "'name' can only rename one")
        return [Attachment.from_path(p, **options) for p in matches]
    return [Attachment.from_path(text, **options)]


def _dict_source(spec: dict, limit: int) -> list[Attachment]:
    """{"path" | "uri" | "content" | "content_base64": ..., "name", "content_type", "is_inline", "content_id"}."""
    spec = dict(spec)
    if "inline" in spec:
        spec["is_inline"] = spec.pop("inline")
    options = {k: spec.pop(k) for k in _OPTIONS if spec.get(k) is not None}
    kinds = [k for k in ("path", "uri", "content", "content_base64") if k in spec]
    unknown = sorted(set(spec) - {"path", "uri", "content", "content_base64"})
    if unknown:
        raise MessageValidationError("attachments", f"unknown attachment key(s) {', '.join(unknown)}; use path, "
                                     "uri, content or content_base64 with name, content_type, is_inline, content_id")
    if len(kinds) != 1:
        raise MessageValidationError("attachments", "an attachment dict needs exactly one of path, uri, content "
                                     f"or content_base64 (got {', '.join(kinds) or 'none'})")
    kind = kinds[0]
    if kind in ("path", "uri"):
        return expand_source(spec[kind], max_glob_matches=limit, **options)
    name = options.pop("name", None)
    if not name:
        raise MessageValidationError("attachments", f"an attachment given as {kind} needs a 'name'")
    data = spec[kind]
    if kind == "content_base64":
        data = base64.b64decode(clean_base64(f"attachments: {name}: content_base64", data))
    return [Attachment.from_bytes(name, data, **options)]


def expand_source(source, *, max_glob_matches: int = MAX_GLOB_MATCHES, **options) -> list[Attachment]:
    """One source as users naturally write it -> its attachments (a glob may give several)."""
    limit = max_glob_matches
    if isinstance(source, Attachment):  # a copy with the options (inline, content id) of where it was given
        return [replace(source, **options)] if options else [source]
    if hasattr(source, "fs") and hasattr(source, "path") and not isinstance(source, str):
        # ObjectStoragePath (a universal_pathlib path, os.PathLike on Airflow 2): use its own, already
        # configured, filesystem; os.fspath() would drop the scheme.
        return _fs_sources(source.fs, source.path, redact_url_secrets(str(source)), "/", options, limit)
    if isinstance(source, os.PathLike):
        return _path_sources(os.fspath(source), options, limit)
    if isinstance(source, str):
        if _URI.match(source):
            return _fsspec_sources(source, options, limit)
        return _path_sources(source, options, limit)
    if isinstance(source, (tuple, list)) and len(source) == 2 and isinstance(source[0], str):
        return [Attachment.from_bytes(source[0], source[1], **options)]
    if isinstance(source, dict):
        return _dict_source({**options, **source}, limit)
    raise MessageValidationError(
        "attachments", f"cannot attach {type(source).__name__}: give a path, glob, URI, ObjectStoragePath, "
        "(name, bytes) pair or a dict with path/uri/content")


def _single(sources) -> bool:
    return isinstance(sources, (str, os.PathLike, dict, Attachment)) or hasattr(sources, "fs")


def expand_sources(sources, *, max_glob_matches: int = MAX_GLOB_MATCHES) -> list[Attachment]:
    if sources is None:
        return []
    if _single(sources):
        sources = [sources]
    if isinstance(sources, tuple) and len(sources) == 2 and isinstance(sources[0], str) \
            and isinstance(sources[1], (bytes, bytearray)):
        sources = [sources]
    if not isinstance(sources, (list, tuple)):
        raise MessageValidationError("attachments", f"expected a path, a list of sources or a dict, got "
                                     f"{type(sources).__name__}")
    out: list[Attachment] = []
    for source in sources:
        out.extend(expand_source(source, max_glob_matches=max_glob_matches))
    return out


def inline_images(images, *, max_glob_matches: int = MAX_GLOB_MATCHES) -> list[Attachment]:
    """{content_id: source} or [source, ...] -> inline attachments (content id from the file name if not given)."""
    if images is None:
        return []
    if isinstance(images, dict):
        out = []
        for content_id, source in images.items():
            if not isinstance(content_id, str) or not content_id.strip():
                raise MessageValidationError("inline_images", f"content id {content_id!r} must be text")
            found = expand_source(source, is_inline=True, content_id=content_id_for(content_id),
                                  max_glob_matches=max_glob_matches)
            if len(found) != 1:
                raise MessageValidationError("inline_images", f"{content_id}: a pattern matched {len(found)} files; "
                                             "give one file per content id")
            out.extend(found)
        return out
    if isinstance(images, (str, os.PathLike, Attachment)) or hasattr(images, "fs"):
        images = [images]
    if not isinstance(images, (list, tuple)):
        raise MessageValidationError("inline_images", f"expected {{content_id: source}} or a list of sources, got "
                                     f"{type(images).__name__}")
    out = []
    for source in images:
        try:
            out.extend(expand_source(source, is_inline=True, max_glob_matches=max_glob_matches))
        except MessageValidationError as err:
            raise MessageValidationError("inline_images", err.problem) from None
    return out
