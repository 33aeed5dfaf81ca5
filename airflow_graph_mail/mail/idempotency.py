"""Idempotency keys, all of it: how a key is built, the tag every keyed message carries so that after an
unclear answer Graph can be asked whether it went out (instead of sending it again), the query that finds
it, and the bounce ref the mail carries for non-delivery reports.

The key is a single-value extended property in this project's own namespace (a GUID of ours and a name),
found again with Graph's documented ``$filter`` on ``singleValueExtendedProperties``. The ref is a header
that Exchange copies into any non-delivery report: a keyed hash of the key, so that no DAG or row name
leaves the tenant. Pure text and hashing, no HTTP: it lives in ``mail/`` because the readers of sent mail
and of reports (``mail/review.py``, ``mail/ndr.py``) need the ref header, and ``mail/`` never imports
``graph/``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from airflow_graph_mail.errors import MessageValidationError

MAX_KEY_LENGTH = 200
PROPERTY_SET = "{CEF3C9B9-3E6A-4EA4-9224-11AEE7E01B3C}"
PROPERTY_ID = f"String {PROPERTY_SET} Name AirflowGraphMailIdempotencyKey"
# The header every keyed message carries (a keyed hash of its idempotency key: nobody without the
# deployment's secret can compute one), which an NDR copies with the rest of the original's headers.
REF_HEADER = "x-airflow-graph-mail-ref"
_REF_CONTEXT = b"airflow-graph-mail bounce ref v1"  # the secret is used for refs only through this derivation
# A client given no secret of the deployment keys refs with this one: they stay unguessable, but another
# process computes other ones (a retry there that finds its mail sent cannot tie that mail's bounces).
PROCESS_REF_SECRET = secrets.token_bytes(32)


def make_key(*parts) -> str:
    """Parts joined with '/'; a key too long to be a comfortable property value keeps its start and a hash."""
    key = "/".join(str(p) for p in parts)
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return key[: MAX_KEY_LENGTH - 17] + "~" + hashlib.sha256(key.encode()).hexdigest()[:16]


def ref_for(key: str, secret: str | bytes) -> str:
    """What REF_HEADER holds for a message sent with this idempotency key: HMAC-SHA256 of the key under a key
    derived from the deployment's secret. Recipients see refs and can guess keys; without the secret they
    can neither compute another mail's ref nor confirm a guess. The same secret gives the same ref in
    every process, so a retried task and the bounce report agree."""
    secret = secret.encode("utf-8") if isinstance(secret, str) else secret
    derived = hmac.new(secret, _REF_CONTEXT, hashlib.sha256).digest()
    return hmac.new(derived, key.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def ref_of(headers) -> str:
    """The ref among a message's ``internetMessageHeaders`` as Graph returns them ("" when it has none)."""
    return next((str(h.get("value", "")) for h in headers or [] if isinstance(h, dict)
                 and str(h.get("name", "")).lower() == REF_HEADER), "")


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
            raise MessageValidationError("singleValueExtendedProperties", "already holds this provider's "
                                         "idempotency key property; pass the key as idempotency_key instead")
        document["singleValueExtendedProperties"] = [*properties, key_property(key)]
        headers = list(document.get("internetMessageHeaders") or [])
        if any(str(h.get("name", "")).lower() == REF_HEADER for h in headers if isinstance(h, dict)):
            raise MessageValidationError("headers", f"{REF_HEADER} is this provider's own header (it ties "
                                         "bounces to the message); remove it from the headers")
        document["internetMessageHeaders"] = [*headers, {"name": REF_HEADER, "value": ref_for(key, secret)}]
    return document


def key_filter(key: str) -> str:
    """Graph's ``$filter`` for the messages tagged with this key."""
    value = key.replace("'", "''")
    return f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROPERTY_ID}' and ep/value eq '{value}')"
