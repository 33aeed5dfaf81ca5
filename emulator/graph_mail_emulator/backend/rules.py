"""Graph's rules for a message in a request: property names, enums, recipients, headers, attachments.

Written from Microsoft's documentation, independently of the client side: property names are
case-insensitive, enum values too, and "false" arrives as a string in Microsoft's own example.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from graph_mail_emulator.backend.text import has_control
from graph_mail_emulator.errors import GraphError, bad_request

# Writable message properties (canonical spelling); mentions exist only on beta.
WRITABLE = [
    "subject", "body", "importance", "toRecipients", "ccRecipients", "bccRecipients", "replyTo", "from",
    "sender", "internetMessageHeaders", "attachments", "flag", "categories", "isDeliveryReceiptRequested",
    "isReadReceiptRequested", "inferenceClassification", "singleValueExtendedProperties",
    "multiValueExtendedProperties", "isRead", "internetMessageId", "conversationId", "extensions",
]
BETA_ONLY = ["mentions"]
# Server-owned properties: accepted in a request body (the old SDK example sends them) and ignored.
READ_ONLY = [
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "receivedDateTime", "sentDateTime",
    "hasAttachments", "bodyPreview", "parentFolderId", "conversationIndex", "isDraft", "webLink",
    "uniqueBody", "mentionsPreview", "unsubscribeData", "unsubscribeEnabled",
]
RECIPIENT_LISTS = ["toRecipients", "ccRecipients", "bccRecipients", "replyTo"]
_ENUMS = {
    "bodyType": ("text", "html"),
    "importance": ("low", "normal", "high"),
    "followupFlagStatus": ("notflagged", "complete", "flagged"),
    "inferenceClassificationType": ("focused", "other"),
}
_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+\.[^\s@<>()\[\],;:\".]+$")
# A header field name (RFC 5322): printable ASCII but the colon.
FIELD_NAME = re.compile(r"^[!-9;-~]+$")


def unknown_property(name: str, type_name: str) -> GraphError:
    return bad_request(
        "RequestBodyRead",
        f"The property '{name}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to only use "
        "property names that are defined by the type or mark the type as open type.",
    )


def canonical_keys(obj: dict, known: Sequence[str], type_name: str, ignore: Sequence[str] = ()) -> dict:
    """Re-spell keys as Graph defines them (matching case-insensitively); unknown names are an error."""
    lookup = {name.lower(): name for name in known}
    ignored = {name.lower() for name in ignore}
    out = {}
    for key, value in obj.items():
        if key.startswith("@odata."):
            continue
        lowered = key.lower()
        if lowered in lookup:
            out[lookup[lowered]] = value
        elif lowered not in ignored:
            raise unknown_property(key, type_name)
    return out


def enum_value(value, enum: str) -> str:
    lowered = str(value).lower()
    if lowered not in _ENUMS[enum]:
        raise bad_request("RequestBodyRead",
                          f"Cannot convert the literal '{value}' to the expected type 'microsoft.graph.{enum}'.")
    return {"notflagged": "notFlagged"}.get(lowered, lowered)


def boolean(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request("RequestBodyRead", f"Cannot convert the literal '{value}' to the expected type 'Edm.Boolean'.")


def recipient(value) -> dict:
    if not isinstance(value, dict):
        raise bad_request("RequestBodyRead", "A recipient must be an object with an emailAddress.")
    value = canonical_keys(value, ["emailAddress"], "recipient")
    email = canonical_keys(value.get("emailAddress") or {}, ["address", "name"], "emailAddress")
    out = {"address": str(email.get("address") or "")}
    if email.get("name"):
        out["name"] = str(email["name"])
    return {"emailAddress": out}


def decode_base64(text, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("RequestBodyRead", f"Invalid base64 in {what}.") from None


def header_safe(value, what: str) -> str | None:
    """An attachment's name, content type or content id: each reaches a header (the .eml's, the viewer's
    download), so a control character or line break in it is refused."""
    if value is None:
        return None
    text = str(value)
    if has_control(text):
        raise bad_request("ErrorInvalidParameter", f"The attachment's {what} {text!r} contains a control character "
                          "or a line break; remove it.")
    return text


def file_attachment(value) -> dict:
    """A fileAttachment from JSON -> {name, contentType, isInline, contentId, content(bytes)}."""
    if not isinstance(value, dict):
        raise bad_request("RequestBodyRead", "An attachment must be an object.")
    odata_type = next((v for k, v in value.items() if k.lower() == "@odata.type"), None)
    if str(odata_type).lstrip("#").lower() != "microsoft.graph.fileattachment":
        raise bad_request("ErrorInvalidParameter",
                          "An attachment needs '@odata.type': '#microsoft.graph.fileAttachment'.")
    fields = canonical_keys(value, ["name", "contentType", "contentBytes", "isInline", "contentId",
                                    "contentLocation", "size", "id", "lastModifiedDateTime"], "fileAttachment")
    if not fields.get("name"):
        raise bad_request("ErrorInvalidParameter", "The attachment name is required.")
    return {
        "name": header_safe(fields["name"], "name"),
        "contentType": header_safe(fields.get("contentType") or "application/octet-stream", "contentType"),
        "isInline": boolean(fields.get("isInline", False), "isInline"),
        "contentId": header_safe(fields.get("contentId"), "contentId"),
        "content": decode_base64(fields.get("contentBytes") or "", "contentBytes"),
    }


def message_from_json(obj, api_version: str) -> tuple[dict, list[dict]]:
    """A JSON message from a request -> (normalised properties, attachments)."""
    if not isinstance(obj, dict):
        raise bad_request("ErrorInvalidParameter", "The message must be a JSON object.")
    known = WRITABLE + (BETA_ONLY if api_version == "beta" else [])
    msg = canonical_keys(obj, known, "message", ignore=READ_ONLY)
    out: dict = {}
    if "subject" in msg:
        out["subject"] = "" if msg["subject"] is None else str(msg["subject"])
    body = msg.get("body")
    if body is not None:
        body = canonical_keys(body, ["contentType", "content"], "itemBody")
        out["body"] = {"contentType": enum_value(body.get("contentType", "text"), "bodyType"),
                       "content": str(body.get("content") or "")}
    if msg.get("importance") is not None:
        out["importance"] = enum_value(msg["importance"], "importance")
    for name in RECIPIENT_LISTS:
        if msg.get(name) is not None:
            if not isinstance(msg[name], list):
                raise bad_request("RequestBodyRead", f"'{name}' must be a collection of recipients.")
            out[name] = [recipient(r) for r in msg[name]]
    for name in ("from", "sender"):
        if msg.get(name):
            out[name] = recipient(msg[name])
    headers = []
    for header in msg.get("internetMessageHeaders") or []:
        header = canonical_keys(header, ["name", "value"], "internetMessageHeader")
        name = str(header.get("name") or "")
        if not name.lower().startswith("x-"):
            raise bad_request("InvalidInternetMessageHeader",
                              f"The internet message header name '{name}' should start with 'x-' or 'X-'.")
        if not FIELD_NAME.match(name):  # a space, a colon or a line break would forge other headers
            raise bad_request("InvalidInternetMessageHeader", f"The internet message header name {name!r} may "
                              "hold only printable ASCII characters other than the colon.")
        headers.append({"name": name, "value": str(header.get("value") or "")})
    if headers:
        out["internetMessageHeaders"] = headers
    if msg.get("flag") is not None:
        flag = canonical_keys(msg["flag"], ["flagStatus", "startDateTime", "dueDateTime", "completedDateTime"],
                              "followupFlag")
        if "flagStatus" in flag:
            flag["flagStatus"] = enum_value(flag["flagStatus"], "followupFlagStatus")
        out["flag"] = flag
    if msg.get("inferenceClassification") is not None:
        out["inferenceClassification"] = enum_value(msg["inferenceClassification"], "inferenceClassificationType")
    for name in ("isDeliveryReceiptRequested", "isReadReceiptRequested", "isRead"):
        if msg.get(name) is not None:
            out[name] = boolean(msg[name], name)
    if msg.get("categories") is not None:
        if not isinstance(msg["categories"], list) or not all(isinstance(c, str) for c in msg["categories"]):
            raise bad_request("RequestBodyRead", "'categories' must be a collection of strings.")
        out["categories"] = msg["categories"]
    for name in ("singleValueExtendedProperties", "multiValueExtendedProperties"):
        if msg.get(name) is not None:
            out[name] = _extended_properties(msg[name], name)
    if msg.get("mentions") is not None:
        out["mentions"] = msg["mentions"]
    attachments = [file_attachment(a) for a in msg.get("attachments") or []]
    return out, attachments


def _extended_properties(value, name: str) -> list[dict]:
    """A collection of {id, value} (value: a string, or strings for the multi-value kind)."""
    multi = name.startswith("multi")
    if not isinstance(value, list):
        raise bad_request("RequestBodyRead", f"'{name}' must be a collection of {{id, value}} objects.")
    out = []
    for prop in value:
        prop = canonical_keys(prop if isinstance(prop, dict) else {"": None}, ["id", "value"],
                              "multiValueLegacyExtendedProperty" if multi else "singleValueLegacyExtendedProperty")
        values = prop.get("value") if multi else [prop.get("value")]
        if not isinstance(prop.get("id"), str) or not prop["id"].strip() or not isinstance(values, list) \
                or not all(isinstance(v, str) for v in values):
            raise bad_request("RequestBodyRead", f"Each of '{name}' needs an 'id' (such as 'String {{GUID}} Name x') "
                              f"and a 'value' ({'strings' if multi else 'a string'}).")
        out.append({"id": prop["id"], "value": prop["value"]})
    return out


def check_sendable(message: dict, recipient_limit: int = 0) -> None:
    """What Graph checks on submission: some recipient, every address resolvable; and, when the tenant's
    recipients-per-message limit is answered at once (``Limits.recipient_limit_answer="400"``), at most that many
    (else Exchange's transport refuses it later with an NDR, ``delivery.py``)."""
    everyone = [r["emailAddress"]["address"] for name in RECIPIENT_LISTS[:3] for r in message.get(name, [])]
    if not everyone:
        raise bad_request("ErrorInvalidRecipients", "At least one recipient isn't valid., "
                          "A message can't be sent because it contains no recipients.")
    for address in everyone:
        if not _ADDRESS.match(address):
            raise bad_request("ErrorInvalidRecipients",
                              f"At least one recipient isn't valid., Recipient '{address}' isn't resolved. "
                              "All recipients must be resolved before a message can be submitted.")
    if recipient_limit and len(everyone) > recipient_limit:
        raise bad_request("ErrorTooManyRecipients",
                          f"The message has {len(everyone)} recipients; the limit is {recipient_limit}.")
