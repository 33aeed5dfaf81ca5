"""Files that hold secrets or mail (the server key, the app's credentials, the mailboxes, uploads) are
created readable by their owner only: with that mode from the first byte, never chmod-ed after a window in
which another user could open them. A file left by an older version is made private the same way."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE = 0o600


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CREAT, PRIVATE)
    os.chmod(path, PRIVATE)  # an existing file keeps its mode through O_CREAT
    return fd


def create_private(path: Path) -> Path:
    """``path``, existing and private (its content, if any, kept)."""
    os.close(_open_private(path, os.O_WRONLY))
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path``'s content with ``data``, private before anything is written."""
    with os.fdopen(_open_private(path, os.O_WRONLY | os.O_TRUNC), "wb") as handle:
        handle.write(data)
