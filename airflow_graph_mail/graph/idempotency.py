"""Idempotency keys: a tag on every message we send, so that after an unclear answer we can ask
Graph whether the message went out instead of sending it again.

The key is a single-value extended property in this project's own namespace (a GUID of ours and a
name), found again with Graph's documented ``$filter`` on ``singleValueExtendedProperties``.
"""

from __future__ import annotations

import hashlib

PROPERTY_SET = "{CEF3C9B9-3E6A-4EA4-9224-11AEE7E01B3C}"
PROPERTY_ID = f"String {PROPERTY_SET} Name AirflowGraphMailIdempotencyKey"
MAX_KEY_LENGTH = 200


def key_property(key: str) -> dict:
    return {"id": PROPERTY_ID, "value": key}


def tag(document: dict, key: str | None) -> dict:
    """The message document with the key added to its extended properties (the document is changed).

    The document spells ``singleValueExtendedProperties`` as Graph does (``graph_document`` sees to it), so
    the user's own properties stay beside the key."""
    if key:
        properties = document.setdefault("singleValueExtendedProperties", [])
        if any(str(p.get("id", "")).lower() == PROPERTY_ID.lower() for p in properties if isinstance(p, dict)):
            from airflow_graph_mail.errors import MessageValidationError

            raise MessageValidationError("singleValueExtendedProperties", "already holds this provider's "
                                         "idempotency key property; pass the key as idempotency_key instead")
        properties.append(key_property(key))
    return document


def key_filter(key: str) -> str:
    value = key.replace("'", "''")
    return f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROPERTY_ID}' and ep/value eq '{value}')"


def make_key(*parts) -> str:
    """Parts joined with '/'; a key too long to be a comfortable property value keeps its start and a hash."""
    key = "/".join(str(p) for p in parts)
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return key[: MAX_KEY_LENGTH - 17] + "~" + hashlib.sha256(key.encode()).hexdigest()[:16]
