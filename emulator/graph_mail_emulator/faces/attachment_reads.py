"""Reading a message's attachments, as Microsoft's "List attachments" and "Get attachment" pages show it:
the collection (``$select``), one attachment (``$expand=microsoft.graph.itemAttachment/item`` for an
attached mail), and its raw contents (``/$value``: a file's bytes with its own content type, streamed; an
attached mail as MIME). A file attachment carries ``contentBytes`` unless ``$select`` leaves it out; an item
attachment has none and a null ``contentType``.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend.inbound import UNREADABLE, read_eml
from graph_mail_emulator.backend.mime import media_type
from graph_mail_emulator.backend.queries import attachment_pieces
from graph_mail_emulator.errors import GraphError, bad_request
from graph_mail_emulator.faces.access import Access
from graph_mail_emulator.http.wire import Request, Response
from graph_mail_emulator.site import Site

READ_ROLES = ("Mail.ReadWrite", "Mail.Read")
PROPERTIES = ("id", "lastModifiedDateTime", "name", "contentType", "size", "isInline", "contentId",
              "contentLocation", "contentBytes")
_CANONICAL = {name.lower(): name for name in PROPERTIES}
_ITEM_EXPAND = re.compile(r"^\s*(?:microsoft\.graph\.)?itemattachment/item\s*$", re.IGNORECASE)
_OPTIONS = {"$select", "$expand"}


def selected(text: str | None) -> tuple[str, ...]:
    """``$select`` on attachments: the id always, then the names asked (Graph's spelling); unknown refused."""
    if not text:
        return PROPERTIES
    names = ["id"]
    for raw in text.split(","):
        name = _CANONICAL.get(raw.strip().lower())
        if name is None:
            raise bad_request("BadRequest", f"Could not find a property named '{raw.strip()}' on type "
                              "'microsoft.graph.attachment'.")
        if name not in names:
            names.append(name)
    return tuple(names)


def attachment_resource(att: dict, names: tuple[str, ...], modified: str) -> dict:
    """One stored attachment as Graph shows it (``att["content"]`` present when contentBytes is wanted)."""
    item = att.get("attachmentType") == "item"
    values = {"id": att["id"], "lastModifiedDateTime": modified, "name": att["name"],
              "contentType": None if item else att["contentType"], "size": att["size"], "isInline": att["isInline"],
              "contentId": att.get("contentId"), "contentLocation": None}
    if not item and "content" in att:
        values["contentBytes"] = base64.b64encode(att["content"]).decode("ascii")
    out = {"@odata.type": "#microsoft.graph.itemAttachment" if item else "#microsoft.graph.fileAttachment"}
    for name in names:
        if name in values and not (item and name in ("contentId", "contentLocation")):
            out[name] = values[name]
    return out


def expanded_attachments(store, message: dict, wanted: list[str]) -> list[dict]:
    """``$expand=attachments($select=...)`` on a message: its attachments as the collection shows them."""
    names = selected(",".join(wanted)) if wanted else PROPERTIES
    return [attachment_resource(a, names, message.get("lastModifiedDateTime", ""))
            for a in store.attachments(message["id"], with_content="contentBytes" in names)]


class AttachmentReads:
    def __init__(self, backend: MailBackend, access: Access, site: Site):
        self.backend = backend
        self.store = backend.store
        self.access = access
        self.site = site

    def _message(self, request: Request) -> tuple[str, dict]:
        mailbox = self.access.mailbox(request, READ_ROLES)
        message, _ = self.store.load(mailbox, request.params["id"])
        return request.params.get("user") or mailbox.id, message

    def _options(self, request: Request) -> dict[str, str]:
        options = request.system_options()
        for name in options:
            if name not in _OPTIONS:
                raise bad_request("BadRequest", f"Query option '{name}' is not allowed here.")
        return options

    def _context(self, request: Request, user: str, message_id: str, tail: str) -> str:
        return (f"{request.origin(self.site.base_url)}/{request.params['version']}/$metadata#users("
                f"'{quote(user, safe='')}')/messages('{quote(message_id, safe='')}')/attachments{tail}")

    def list_attachments(self, request: Request) -> Response:
        """GET .../messages/{id}/attachments: every attachment, contentBytes included unless not selected."""
        user, message = self._message(request)
        options = self._options(request)
        if "$expand" in options:
            raise bad_request("BadRequest", "Expand an attached mail on one attachment: "
                              "/attachments/{id}?$expand=microsoft.graph.itemattachment/item.")
        names = selected(options.get("$select"))
        stored = self.store.attachments(message["id"], with_content="contentBytes" in names)
        modified = message.get("lastModifiedDateTime", "")
        return Response.json(200, {"@odata.context": self._context(request, user, message["id"], ""),
                                   "value": [attachment_resource(a, names, modified) for a in stored]})

    def get_attachment(self, request: Request) -> Response:
        """GET .../attachments/{id}: one attachment; an attached mail's item inlined when expanded."""
        user, message = self._message(request)
        options = self._options(request)
        names = selected(options.get("$select"))
        expansion = options.get("$expand")
        if expansion is not None and not _ITEM_EXPAND.match(expansion):
            raise bad_request("BadRequest", f"'{expansion}' cannot be expanded on an attachment; the one expansion "
                              "is microsoft.graph.itemattachment/item.")
        found = [a for a in self.store.attachments(message["id"], with_content=True)
                 if a["id"] == request.params["attachment"]]
        if not found:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        att = found[0]
        body = {"@odata.context": self._context(request, user, message["id"], "/$entity"),
                **attachment_resource(att, names, message.get("lastModifiedDateTime", ""))}
        if expansion is not None and att.get("attachmentType") == "item":
            tail = f"('{quote(att['id'], safe='')}')/microsoft.graph.itemAttachment/item/$entity"
            body["item@odata.context"] = self._context(request, user, message["id"], tail)
            body["item"] = attached_message(att["content"])
        return Response.json(200, body)

    def attachment_value(self, request: Request) -> Response:
        """GET .../attachments/{id}/$value: a file's bytes (its own content type), or an attached mail as MIME."""
        _, message = self._message(request)
        found = attachment_pieces(self.store, message["id"], request.params["attachment"])
        if found is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        meta, size, pieces = found
        # The stored type is what a stranger wrote: only a well-formed type/subtype reaches the header.
        kind = "message/rfc822" if meta["attachmentType"] == "item" else "/".join(media_type(meta["contentType"]))
        return Response(200, b"", {"Content-Type": kind}, stream=pieces, stream_length=size)


def attached_message(eml: bytes) -> dict:
    """An attached mail as the message Graph expands it to (its id empty, as in Microsoft's example)."""
    try:
        message, attachments, _ = read_eml(eml)
    except UNREADABLE:  # an attached mail that does not parse is shown empty, never a 500
        message, attachments = {"subject": "", "body": {"contentType": "text", "content": ""}}, []
    when = message.get("sentDateTime")
    return {"@odata.type": "#microsoft.graph.message", "id": "", "createdDateTime": when,
            "lastModifiedDateTime": when, "receivedDateTime": when, "sentDateTime": when,
            "hasAttachments": any(not a["isInline"] for a in attachments),
            "internetMessageId": message.get("internetMessageId"),
            "subject": message.get("subject", ""), "importance": message.get("importance", "normal"),
            "isRead": True, "isDraft": False, "body": message["body"], "sender": message.get("from"),
            "from": message.get("from"), "toRecipients": message.get("toRecipients", []),
            "ccRecipients": message.get("ccRecipients", []), "replyTo": message.get("replyTo", [])}
