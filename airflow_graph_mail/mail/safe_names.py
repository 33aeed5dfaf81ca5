"""File names for attachments from strangers: one path component, nothing hidden, reserved or too long, and
unique within a message, the same on every try (so a retry overwrites its own files and nothing else).

``../../etc/passwd`` becomes ``passwd``; ``CON.txt`` ``_CON.txt``; ``.bashrc`` ``_.bashrc``; two ``data.csv``
become ``data.csv`` and ``data (2).csv``; an empty or unreadable name the caller's fallback.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_BYTES = 200  # UTF-8 bytes: under every common file system's 255, with room for " (2)"
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029<>:"|?*\\/]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$)(\..*)?$", re.IGNORECASE)


def _split(name: str) -> tuple[str, str]:
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > 16:
        return name, ""
    return stem, "." + extension


def _fit(name: str, limit: int = MAX_NAME_BYTES) -> str:
    """At most ``limit`` UTF-8 bytes, the extension kept, never cutting a character in half."""
    if len(name.encode()) <= limit:
        return name
    stem, extension = _split(name)
    room = max(limit - len(extension.encode()), 1)
    stem = stem.encode()[:room].decode("utf-8", "ignore")
    return stem + extension


def safe_file_name(name, fallback: str) -> str:
    """One safe path component from an attachment's name (``fallback`` when nothing usable is left)."""
    text = unicodedata.normalize("NFC", name if isinstance(name, str) else "")
    text = re.split(r"[\\/]", text)[-1]  # the last component only: no directories, no traversal
    text = _UNSAFE.sub("_", text).strip().strip(".").strip()
    if not text:
        return fallback
    if _RESERVED.match(text):
        text = "_" + text
    return _fit(text)


def unique_names(names: list[str]) -> list[str]:
    """The same names, each unique (any case): a later duplicate gets " (2)", " (3)"... before its extension."""
    taken: set[str] = set()
    out = []
    for name in names:
        candidate, number = name, 1
        while candidate.casefold() in taken:
            number += 1
            stem, extension = _split(name)
            suffix = f" ({number}){extension}"
            candidate = _fit(stem, MAX_NAME_BYTES - len(suffix.encode())) + suffix
        taken.add(candidate.casefold())
        out.append(candidate)
    return out
