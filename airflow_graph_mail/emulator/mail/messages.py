"""Graph's message endpoints: sendMail, create (draft), update, send, get and list, as Microsoft documents them."""

from __future__ import annotations

import re

from airflow_graph_mail.emulator.mail import mime as mime_io
from airflow_graph_mail.emulator.mail.access import Access
from airflow_graph_mail.emulator.mail.backend import MAX_REQUEST_BYTES, MailBackend
from airflow_graph_mail.emulator.mail.rules import boolean, canonical_keys, message_from_json
from airflow_graph_mail.emulator.mail.store import IMMUTABLE_ID, Mailbox, message_size
from airflow_graph_mail.emulator.wire import GraphError, Request, Response, Site, bad_request

# The message properties Graph returns by default (internetMessageHeaders only on $select).
DEFAULT_PROPERTIES = [
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "categories", "receivedDateTime",
    "sentDateTime", "hasAttachments", "internetMessageId", "subject", "bodyPreview", "importance",
    "parentFolderId", "conversationId", "isDeliveryReceiptRequested", "isReadReceiptRequested", "isRead",
    "isDraft", "webLink", "inferenceClassification", "body", "sender", "from", "toRecipients",
    "ccRecipients", "bccRecipients", "replyTo", "flag",
]


def body_preview(body: dict) -> str:
    text = re.sub(r"<[^>]+>", " ", body.get("content", "")) if body.get("contentType") == "html" else \
        body.get("content", "")
    return " ".join(text.split())[:255]


class MessageResponses:
    def __init__(self, backend: MailBackend, access: Access, site: Site):
        self.backend = backend
        self.store = backend.store
        self.access = access
        self.site = site

    def _check_size(self, request: Request) -> None:
        if request.oversize or len(request.body) > MAX_REQUEST_BYTES:
            raise GraphError(413, "RequestEntityTooLarge", "The maximum request length supported is 4MB.")

    def _incoming(self, request: Request, obj=None) -> tuple[dict, list[dict], bytes | None]:
        """Either base64 MIME (text/plain) or a JSON message -> (message, attachments, raw MIME)."""
        if request.is_mime:
            raw = mime_io.decode_body(request.body)
            message, attachments = mime_io.message_from_mime(raw)
        else:
            message, attachments = message_from_json(obj if obj is not None else request.json(),
                                                     request.params["version"])
            raw = None
        message.setdefault("body", {"contentType": "text", "content": ""})
        message["bodyPreview"] = body_preview(message["body"])
        return message, attachments, raw

    def _check_new_message_size(self, message: dict, attachments: list[dict]) -> None:
        if message_size(message, sum(len(a["content"]) for a in attachments)) > self.backend.limits.message_size_limit:
            raise GraphError(400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")

    def send_mail(self, request: Request) -> Response:
        self._check_size(request)
        mailbox = self.access.mailbox(request, "Mail.Send")
        save = True
        if request.is_mime:
            message, attachments, raw = self._incoming(request)
        else:
            payload = request.json()
            if not isinstance(payload, dict):
                raise bad_request("ErrorInvalidParameter", "The request body must be a JSON object.")
            params = {k.lower(): v for k, v in payload.items()}
            if "message" in params:
                payload = canonical_keys(payload, ["message", "saveToSentItems"], "sendMail")
                save = boolean(payload.get("saveToSentItems", True), "saveToSentItems")
                target = payload["message"]
            else:  # Microsoft's flagged-message example posts the message's properties unwrapped.
                target = payload
            message, attachments, raw = self._incoming(request, target)
        self._check_new_message_size(message, attachments)
        self.store.send_new(mailbox, message, attachments, save, raw)
        self.backend.count_send()
        return Response(self.backend.limits.sendmail_status)

    def create_message(self, request: Request) -> Response:
        self._check_size(request)
        mailbox = self.access.mailbox(request, "Mail.ReadWrite")
        folder = self.store.resolve_folder(mailbox, request.params.get("folder") or "drafts")
        message, attachments, raw = self._incoming(request)
        self._check_new_message_size(message, attachments)
        message_id = self.store.create_draft(mailbox, folder, message, attachments, raw)
        return Response.json(201, self._render(request, mailbox, message_id))

    def update_message(self, request: Request) -> Response:
        """Update message: a draft takes new recipients, subject, body or importance (as a person editing
        it in Outlook would); a sent message keeps them."""
        mailbox = self.access.mailbox(request, "Mail.ReadWrite")
        message, _ = self.store.load(mailbox, request.params["id"])
        changes, attachments = message_from_json(request.json(), request.params["version"])
        if attachments:
            raise bad_request("ErrorInvalidParameter", "Attachments are added through the attachments collection.")
        if not message.get("isDraft") and changes:
            raise bad_request("ErrorInvalidPropertyUpdateSentMessage", "Update operation is not allowed on a sent "
                              "message for these properties.")
        self.store.update(mailbox, message["id"], changes)
        return Response.json(200, self._render(request, mailbox, message["id"]))

    def send_draft(self, request: Request) -> Response:
        mailbox = self.access.mailbox(request, "Mail.Send")
        if request.body:
            raise bad_request("ErrorInvalidParameter", "The send action takes no request body.")
        self.store.send_draft(mailbox, request.params["id"])
        return Response(202)

    def get_message(self, request: Request) -> Response:
        mailbox = self.access.mailbox(request, ("Mail.ReadWrite", "Mail.Read"))
        return Response.json(200, self._render(request, mailbox, request.params["id"]))

    def list_messages(self, request: Request) -> Response:
        mailbox = self.access.mailbox(request, ("Mail.ReadWrite", "Mail.Read"))
        folder = request.params.get("folder")
        folders = [self.store.resolve_folder(mailbox, folder)] if folder else ["inbox", "drafts", "sentitems"]
        top = int(request.query.get("$top", 10))
        wanted = property_filter(request.query["$filter"]) if "$filter" in request.query else None
        if wanted:
            messages = [m for f in folders for m in self.store.find_by_property(mailbox, f, *wanted, top)]
        else:
            messages = [m for f in folders for m in self.store.list_folder(mailbox, f, top)]
        messages = messages[:top]
        return Response.json(200, {"value": [self._project(request, m) for m in messages]})

    def _render(self, request: Request, mailbox: Mailbox, message_id: str) -> dict:
        message, _ = self.store.load(mailbox, message_id)
        return self._project(request, message)

    def _project(self, request: Request, message: dict) -> dict:
        message = {**message, "webLink": self.store.web_link(self.site.base_url, message["id"]),
                   "changeKey": message["lastModifiedDateTime"], "categories": message.get("categories", [])}
        for name in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
            message.setdefault(name, [])
        select = request.query.get("$select")
        names = [n.strip() for n in select.split(",")] if select else DEFAULT_PROPERTIES
        out = {"@odata.etag": f'W/"{message["changeKey"]}"'}
        out.update({n: message[n] for n in names if n in message})
        if request.immutable_ids and IMMUTABLE_ID in message:
            out["id"] = message[IMMUTABLE_ID]
        return out


# Microsoft's documented form: singleValueExtendedProperties/Any(ep: ep/id eq '<id>' and ep/value eq '<value>')
_QUOTED = r"'((?:[^']|'')*)'"
_PROPERTY_FILTER = re.compile(
    r"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+" + _QUOTED
    + r"\s+and\s+\1/value\s+eq\s+" + _QUOTED + r"\s*\)\s*$", re.IGNORECASE)


def property_filter(expression: str) -> tuple[str, str]:
    """The one $filter this emulator understands -> (property id, value); anything else is refused."""
    found = _PROPERTY_FILTER.match(expression)
    if not found:
        raise bad_request("BadRequest", "Invalid filter clause: the emulator supports only "
                          "singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...').")
    return found.group(2).replace("''", "'"), found.group(3).replace("''", "'")
