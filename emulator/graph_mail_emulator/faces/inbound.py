"""The inspection API's door for mail from outside: ``POST /_emulator/inbound`` with the mail as JSON fields
or as an .eml (``Content-Type: message/rfc822``), and ``POST /_emulator/delta/expire``. No token, like the
rest of ``/_emulator/``; the dispatcher refuses it from a page on another site. The same as
``emulator.inbound`` in Python (``backend/inbound.py``).
"""

from __future__ import annotations

import base64
import binascii

from graph_mail_emulator.backend.inbound import Inbound, InboundError
from graph_mail_emulator.errors import GraphError, bad_request
from graph_mail_emulator.http.wire import Request, Response

_FIELDS = {"to", "from", "subject", "body", "bodytype", "cc", "replyto", "headers", "authentication", "folder",
           "inreplyto", "internetmessageid", "attachments"}


class InboundResponses:
    def __init__(self, inbound: Inbound):
        self.inbound = inbound

    def inbound_receive(self, request: Request) -> Response:
        if request.oversize:
            raise GraphError(413, "RequestEntityTooLarge", "The mail is larger than the emulator takes through the "
                             "inspection API; give large attachments to emulator.inbound.receive as file paths.")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if kind == "message/rfc822":
                pairs = request.query_pairs
                to = [v for k, v in pairs if k == "to" and v] or None
                arrived = self.inbound.receive_eml(request.body, to=to, folder=request.query.get("folder", "inbox"),
                                                   authentication=request.query.get("authentication", "pass"))
            else:
                arrived = self.inbound.receive(**_fields(request.json()))
        except InboundError as err:
            raise bad_request("BadRequest", str(err)) from None
        return Response.json(201, {"value": arrived})

    def inbound_expire_delta(self, request: Request) -> Response:
        status = request.query.get("status", "410")
        if status not in ("400", "410"):
            raise bad_request("BadRequest", f"status={status}: an expired delta link is answered 410 or 400.")
        self.inbound.expire_delta_links(int(status))
        return Response(204)


def _fields(payload) -> dict:
    """The JSON form -> receive()'s arguments, each named in the error when it is not what it should be."""
    if not isinstance(payload, dict):
        raise bad_request("BadRequest", "Give the mail as a JSON object ({\"to\", \"from\", \"subject\", ...}) or "
                          "as an .eml with Content-Type: message/rfc822.")
    given = {key.lower(): value for key, value in payload.items()}
    unknown = set(given) - _FIELDS
    if unknown:
        raise bad_request("BadRequest", f"Unknown field(s) {', '.join(sorted(unknown))}; the fields are "
                          "to, from, subject, body, bodyType, cc, replyTo, headers, authentication, folder, "
                          "inReplyTo, internetMessageId, attachments.")
    for name in ("subject", "body", "bodytype", "authentication", "folder", "inreplyto", "internetmessageid", "from"):
        if name in given and not isinstance(given[name], str):
            raise bad_request("BadRequest", f"'{name}' must be a string.")
    for name in ("to", "cc", "replyto"):
        value = given.get(name, [])
        if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            raise bad_request("BadRequest", f"'{name}' must be an address or a list of addresses.")
    headers = given.get("headers", [])
    if not isinstance(headers, list) or not all(isinstance(h, dict) and isinstance(h.get("name"), str)
                                                and isinstance(h.get("value"), str) for h in headers):
        raise bad_request("BadRequest", "'headers' must be a list of {\"name\", \"value\"} strings.")
    if "from" not in given:
        raise bad_request("BadRequest", "'from' is required: the sender's address or 'Name <address>'.")
    return {"to": given.get("to", []), "sender": given["from"], "subject": given.get("subject", ""),
            "body": given.get("body", ""), "body_type": given.get("bodytype", "text").lower(),
            "cc": given.get("cc", []), "reply_to": given.get("replyto", []),
            "headers": [(h["name"], h["value"]) for h in headers],
            "authentication": given.get("authentication", "pass"), "folder": given.get("folder", "inbox"),
            "in_reply_to": given.get("inreplyto"), "message_id": given.get("internetmessageid"),
            "attachments": [_attachment(a, index) for index, a in enumerate(_list(given.get("attachments")))]}


def _list(value) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_request("BadRequest", "'attachments' must be a list.")
    return value


def _attachment(value, index: int) -> dict:
    if not isinstance(value, dict):
        raise bad_request("BadRequest", f"attachments[{index}] must be an object.")
    fields = {key.lower(): item for key, item in value.items()}
    kind = str(fields.get("@odata.type", "#microsoft.graph.fileAttachment")).lstrip("#").lower()
    if kind == "microsoft.graph.itemattachment":
        return {"name": _string(fields.get("name"), index, "name"), "item": _bytes(fields.get("eml"), index, "eml")}
    if kind != "microsoft.graph.fileattachment":
        raise bad_request("BadRequest", f"attachments[{index}]: @odata.type is #microsoft.graph.fileAttachment or "
                          "#microsoft.graph.itemAttachment.")
    return {"name": _string(fields.get("name"), index, "name"),
            "content": _bytes(fields.get("contentbytes"), index, "contentBytes"),
            "contentType": _string(fields.get("contenttype"), index, "contentType"),
            "isInline": fields.get("isinline") is True, "contentId": _string(fields.get("contentid"), index,
                                                                               "contentId")}


def _string(value, index: int, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise bad_request("BadRequest", f"attachments[{index}].{name} must be a string.")
    return value


def _bytes(value, index: int, name: str) -> bytes:
    try:
        return base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise bad_request("BadRequest", f"attachments[{index}].{name} must be base64.") from None
