"""Idempotency keys as the operators build them: readable, and bounded in length."""

from __future__ import annotations

import hashlib

MAX_KEY_LENGTH = 200


def make_key(*parts) -> str:
    """Parts joined with '/'; a key too long to be a comfortable property value keeps its start and a hash."""
    key = "/".join(str(p) for p in parts)
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return key[: MAX_KEY_LENGTH - 17] + "~" + hashlib.sha256(key.encode()).hexdigest()[:16]
