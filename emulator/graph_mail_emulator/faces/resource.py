"""A stored message as Graph returns it: its documented properties, in Graph's order and spelling, with
the values Exchange gives the ones a client never sets; ``$select``; and the ``@odata.context`` URL.

The order is the one on Microsoft's create-message page (``@odata.context``, ``@odata.etag``, ``id``,
``createdDateTime``, ... ``replyTo``, ``flag``); ``internetMessageHeaders`` and ``uniqueBody`` come only
when selected, as there.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from urllib.parse import quote

from graph_mail_emulator.errors import bad_request

DEFAULT_PROPERTIES = (
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "receivedDateTime",
    "sentDateTime", "hasAttachments", "internetMessageId", "subject", "bodyPreview", "importance",
    "parentFolderId", "conversationId", "conversationIndex", "isDeliveryReceiptRequested",
    "isReadReceiptRequested", "isRead", "isDraft", "webLink", "inferenceClassification", "body", "sender",
    "from", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "flag",
)
# Selectable besides the defaults (navigation properties come with $expand, which is not emulated).
SELECT_ONLY = ("internetMessageHeaders", "uniqueBody")
_CANONICAL = {name.lower(): name for name in (*DEFAULT_PROPERTIES, *SELECT_ONLY)}
_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.timezone.utc)


def selected(select: str | None) -> tuple[str, ...]:
    """``$select=subject,From`` -> ("id", "subject", "from"), canonical and in the order asked; Graph always
    adds the id. An unknown name is refused as Graph refuses it."""
    if not select:
        return DEFAULT_PROPERTIES
    names = ["id"]
    for raw in select.split(","):
        name = _CANONICAL.get(raw.strip().lower())
        if name is None:
            raise bad_request("BadRequest", f"Could not find a property named '{raw.strip()}' on type "
                              "'microsoft.graph.message'.")
        if name not in names:
            names.append(name)
    return tuple(names)


def change_key(message: dict) -> str:
    """An opaque version stamp that changes whenever the message does (Exchange's is base64 too)."""
    digest = hashlib.sha1(f"{message['id']}|{message.get('lastModifiedDateTime')}".encode()).digest()
    return base64.b64encode(b"\x16\x00\x00\x00" + digest).decode()


def conversation_index(message: dict) -> str:
    """The header block of a conversation index, as Exchange makes it: a reserved byte, the first five
    bytes of the FILETIME of the conversation's start, and a GUID (here derived from the conversation id)."""
    started = dt.datetime.fromisoformat(str(message.get("createdDateTime", "1601-01-01T00:00:00Z"))
                                        .replace("Z", "+00:00"))
    filetime = int((started - _FILETIME_EPOCH).total_seconds() * 10_000_000)
    guid = hashlib.md5(str(message.get("conversationId", "")).encode(), usedforsecurity=False).digest()
    return base64.b64encode(b"\x01" + filetime.to_bytes(8, "big")[:5] + guid).decode()


def full(message: dict, web_link: str) -> dict:
    """Every documented property with Exchange's value for those the client left unset."""
    created = message.get("createdDateTime")
    return {
        **message,
        "changeKey": change_key(message),
        "categories": message.get("categories") or [],
        "receivedDateTime": message.get("receivedDateTime") or created,  # a draft shows its creation time
        "sentDateTime": message.get("sentDateTime") or created,
        "conversationIndex": conversation_index(message),
        "isDeliveryReceiptRequested": bool(message.get("isDeliveryReceiptRequested", False)),
        "isReadReceiptRequested": bool(message.get("isReadReceiptRequested", False)),
        "webLink": web_link,
        "inferenceClassification": message.get("inferenceClassification") or "focused",
        "uniqueBody": message.get("body"),
        "internetMessageHeaders": message.get("internetMessageHeaders") or [],
        **{name: message.get(name) or [] for name in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo")},
    }


def project(message: dict, names: tuple[str, ...], id_shown: str) -> dict:
    """The properties ``names`` of a ``full`` message, after its ``@odata.etag``, as Graph orders them."""
    out = {"@odata.etag": f'W/"{message["changeKey"]}"'}
    for name in names:
        if name == "id":
            out["id"] = id_shown
        elif name in message:
            out[name] = message[name]
    return out


def web_link(base_url: str, message_id: str) -> str:
    """The message in Outlook on the web (the emulator's viewer answers the link)."""
    return f"{base_url}/owa/?ItemID={quote(message_id, safe='')}&exvsurl=1&viewmodel=ReadMessageItem"


def context_url(origin: str, version: str, user: str, collection: str, names: tuple[str, ...],
                entity: bool) -> str:
    """``@odata.context``: ``{origin}/v1.0/$metadata#users('{user}')/messages[(sel,ected)][/$entity]``."""
    path = f"{origin}/{version}/$metadata#users('{quote(user, safe='')}')/{collection}"
    if names is not DEFAULT_PROPERTIES:
        path += "(" + ",".join(n for n in names if n != "id") + ")"
    return path + ("/$entity" if entity else "")
