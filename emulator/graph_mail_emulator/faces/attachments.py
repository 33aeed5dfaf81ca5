"""Attachments on drafts: POST /attachments (under 3 MB) and upload sessions (3 to 150 MB), as documented."""

from __future__ import annotations

import re

from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend.limits import (
    MAX_ATTACHMENT_BYTES,
    MAX_CHUNK_BYTES,
    MAX_REQUEST_BYTES,
    UPLOAD_SESSION_MIN_BYTES,
    message_size,
)
from graph_mail_emulator.backend.rules import boolean, canonical_keys, file_attachment, header_safe
from graph_mail_emulator.errors import GraphError, bad_request
from graph_mail_emulator.faces.access import Access
from graph_mail_emulator.http.wire import Request, Response
from graph_mail_emulator.site import Site

_ATTACHMENT_ITEM = ["attachmentType", "name", "size", "contentType", "isInline", "contentId"]


class AttachmentResponses:
    def __init__(self, backend: MailBackend, access: Access, site: Site, tenant_id: str):
        self.backend = backend
        self.store = backend.store
        self.uploads = backend.uploads
        self.access = access
        self.site = site
        self.tenant_id = tenant_id

    def _check_message_size(self, message_id: str, message: dict, adding: int) -> None:
        attached = self.store.attached_bytes(message_id) + self.uploads.pending_bytes(message_id) + adding
        total = message_size(message, attached)
        if total > self.backend.limits.message_size_limit:
            raise GraphError(400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")

    def _draft(self, request: Request):
        mailbox = self.access.mailbox(request, "Mail.ReadWrite")
        message = self.store.load_draft(mailbox, request.params["id"])
        request.params["id"] = message["id"]  # the current id, when the request named the immutable one
        return mailbox, message

    def create_attachment(self, request: Request) -> Response:
        if request.oversize or len(request.body) > MAX_REQUEST_BYTES:
            raise GraphError(413, "RequestEntityTooLarge", "The maximum request length supported is 4MB.")
        mailbox, message = self._draft(request)
        attachment = file_attachment(request.json())
        self._check_message_size(request.params["id"], message, len(attachment["content"]))
        attachment_id = self.store.add_attachment(mailbox, request.params["id"], attachment)
        return Response.json(201, {
            "@odata.type": "#microsoft.graph.fileAttachment", "id": attachment_id,
            "lastModifiedDateTime": self.backend.clock.iso(), "name": attachment["name"],
            "contentType": attachment["contentType"], "size": len(attachment["content"]),
            "isInline": attachment["isInline"], "contentId": attachment.get("contentId"),
        })

    def create_upload_session(self, request: Request) -> Response:
        mailbox, message = self._draft(request)
        payload = request.json()
        if not isinstance(payload, dict):
            raise bad_request("ErrorInvalidParameter", "The request body must be a JSON object.")
        item = canonical_keys(payload, ["AttachmentItem"], "createUploadSession").get("AttachmentItem")
        if not isinstance(item, dict):
            raise bad_request("ErrorInvalidParameter", "The AttachmentItem parameter is required.")
        item = canonical_keys(item, _ATTACHMENT_ITEM, "attachmentItem")
        if str(item.get("attachmentType", "file")).lower() != "file":
            raise bad_request("ErrorInvalidParameter", "Only attachmentType 'file' can be uploaded to a message.")
        size = item.get("size")
        if not item.get("name") or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad_request("ErrorInvalidParameter", "AttachmentItem needs a name and a size in bytes.")
        if size < UPLOAD_SESSION_MIN_BYTES:
            raise bad_request("ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                              "Attachment size must be at least 3 MB for an upload session; attach smaller "
                              "files with a POST to the attachments collection.")
        if size > MAX_ATTACHMENT_BYTES:
            raise bad_request("ErrorAttachmentSizeExceeded", "An attachment can be at most 150 MB.")
        self._check_message_size(request.params["id"], message, size)
        attachment = {"name": header_safe(item["name"], "name"), "size": size,
                      "contentType": header_safe(item.get("contentType") or "application/octet-stream", "contentType"),
                      "isInline": boolean(item.get("isInline", False), "isInline"),
                      "contentId": header_safe(item.get("contentId"), "contentId")}
        session = self.uploads.open(mailbox.id, request.params["id"], attachment,
                                        self.backend.limits.upload_session_lifetime)
        version = request.params["version"]
        return Response.json(201, {
            "@odata.context": f"{request.origin(self.site.base_url)}/{version}/$metadata#microsoft.graph.uploadSession",
            "uploadUrl": self._upload_url(request, mailbox.id, session),
            "expirationDateTime": session.expiration, "nextExpectedRanges": ["0-"],
        })

    def _upload_url(self, request: Request, mailbox_id: str, session) -> str:
        return (f"{self.site.upload_origin(request.host_name)}/api/v2.0/Users('{mailbox_id}@{self.tenant_id}')"
                f"/Messages('{request.params['id']}')/AttachmentSessions('{session.id}')?authtoken={session.token}")

    def _session(self, request: Request):
        """The upload URL is pre-authenticated: a bearer token sent with it is refused, as Outlook does."""
        if "authorization" in request.headers:
            raise GraphError(401, "InvalidAuthenticationToken", "An upload URL carries its own authtoken; send "
                             "no Authorization header with it.")
        session = self.uploads.get(request.params["session"], request.query.get("authtoken"))
        user = re.sub(r"@[^@]*$", "", request.params["upload_user"])
        if user != session.mailbox_id or request.params["message"] != session.message_id:
            raise GraphError(404, "ErrorItemNotFound", "The upload session was not found.")
        return session

    def upload_chunk(self, request: Request) -> Response:
        session = self._session(request)
        if request.oversize or len(request.body) > MAX_CHUNK_BYTES:
            raise GraphError(413, "RequestEntityTooLarge", "A byte range can be at most 4 MB.")
        self.backend.upload_budget.spend(session.mailbox_id, len(request.body))
        if not self.uploads.write(session, request.headers.get("content-range"), request.body):
            return Response.json(200, {
                "@odata.context": f"{request.origin(self.site.base_url)}/api/v2.0/$metadata#AttachmentSessions/$entity",
                **session.status()})
        mailbox = self.store.find_mailbox(session.mailbox_id)
        if mailbox is None:
            raise GraphError(404, "ErrorItemNotFound", "The upload session's mailbox is gone.")
        try:
            with session.path.open("rb") as file:
                attachment_id = self.store.add_attachment(mailbox, session.message_id, session.item, file=file,
                                                          sha256=session.digest.hexdigest())
        finally:
            self.uploads.close(session)
        location = (f"{request.origin(self.site.base_url)}/api/v2.0/Users('{session.mailbox_id}@{self.tenant_id}')"
                    f"/Messages('{session.message_id}')/Attachments('{attachment_id}')")
        return Response(201, b"", {"Location": location})

    def upload_status(self, request: Request) -> Response:
        return Response.json(200, self._session(request).status())

    def cancel_upload(self, request: Request) -> Response:
        self.uploads.close(self._session(request))
        return Response(204)

    def delete_message(self, request: Request) -> Response:
        mailbox = self.access.mailbox(request, "Mail.ReadWrite")
        self.store.delete(mailbox, request.params["id"])
        for session in self.uploads.for_message(request.params["id"]):
            self.uploads.close(session)
        return Response(204)
