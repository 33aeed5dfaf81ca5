"""Idempotency keys: a tag on every message we send, so that after an unclear answer we can ask
Graph whether the message went out instead of sending it again.

The key is a single-value extended property in this project's own namespace (a GUID of ours and a
name), found again with Graph's documented ``$filter`` on ``singleValueExtendedProperties``. The mail also
carries the key's ref (``mail/ndr.py``), keyed by a secret that the caller passes.
"""

from __future__ import annotations

import secrets

from airflow_graph_mail.mail.ndr import REF_HEADER, ref_for

# A client given no secret of the deployment keys refs with this one: they stay unguessable, but another
# process computes other ones (a retry there that finds its mail sent cannot tie that mail's bounces).
PROCESS_REF_SECRET = secrets.token_bytes(32)

PROPERTY_SET = "{CEF3C9B9-3E6A-4EA4-9224-11AEE7E01B3C}"
PROPERTY_ID = f"String {PROPERTY_SET} Name AirflowGraphMailIdempotencyKey"


def key_property(key: str) -> dict:
    return {"id": PROPERTY_ID, "value": key}


def tag(document: dict, key: str | None, secret: str | bytes) -> dict:
    """The message document with the key added to its extended properties, and the key's ref (keyed by
    ``secret``) as a header that Exchange copies into any non-delivery report (new lists; the caller's are
    kept).

    The document spells ``singleValueExtendedProperties`` as Graph does (``graph_document`` sees to it), so
    the user's own properties stay beside the key."""
    if key:
        properties = list(document.get("singleValueExtendedProperties") or [])
        if any(str(p.get("id", "")).lower() == PROPERTY_ID.lower() for p in properties if isinstance(p, dict)):
            from airflow_graph_mail.errors import MessageValidationError

            raise MessageValidationError("singleValueExtendedProperties", "already holds this provider's "
                                         "idempotency key property; pass the key as idempotency_key instead")
        document["singleValueExtendedProperties"] = [*properties, key_property(key)]
        headers = list(document.get("internetMessageHeaders") or [])
        if any(str(h.get("name", "")).lower() == REF_HEADER for h in headers if isinstance(h, dict)):
            from airflow_graph_mail.errors import MessageValidationError

            raise MessageValidationError("headers", f"{REF_HEADER} is this provider's own header (it ties "
                                         "bounces to the message); remove it from the headers")
        document["internetMessageHeaders"] = [*headers, {"name": REF_HEADER, "value": ref_for(key, secret)}]
    return document


def key_filter(key: str) -> str:
    value = key.replace("'", "''")
    return f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROPERTY_ID}' and ep/value eq '{value}')"
