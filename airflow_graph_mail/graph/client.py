"""GraphMailClient: the Graph mail endpoints over one requests session and one token source."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from email.message import EmailMessage
from urllib.parse import quote

from airflow_graph_mail.graph.body import StreamingJson, attachment_document, message_document
from airflow_graph_mail.graph.errors import (
    GraphConfigError, GraphMailError, GraphRequestError, MessageTooLargeError, error_from_response,
)
from airflow_graph_mail.graph.upload import AttachmentUpload, UploadFailedError
from airflow_graph_mail.mail.attachments import MB
from airflow_graph_mail.mail.errors import MessageValidationError
from airflow_graph_mail.mail.message import Message, graph_message

log = logging.getLogger(__name__)

# Graph refuses request bodies over 4 MB (base64 included); keep a margin for headers and framing.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
REQUEST_SAFETY_MARGIN = 64 * 1024
# Bodies up to this size are joined before sending; larger ones are streamed piece by piece.
SMALL_BODY_BYTES = 512 * 1024
# Attachments from 3 MB (decimal, as Microsoft writes it) go through an upload session; below, one POST
# (whose base64 body, under 4,000,000 bytes, stays inside the request limit).
UPLOAD_SESSION_MIN_BYTES = 3_000_000
# Exchange Online's default message size limit; an admin can raise it to 150 MB.
DEFAULT_MAX_MESSAGE_BYTES = 35 * MB
MAX_MESSAGE_BYTES = 150 * MB
# PidTagDeleteAfterSubmit: a sent draft leaves no copy in Sent Items (saveToSentItems=false on the draft path).
DELETE_AFTER_SUBMIT = {"id": "Boolean 0x0E01", "value": "true"}


def encode_mime(mime: bytes | str | EmailMessage) -> bytes:
    """Graph's MIME endpoints take the RFC 5322 bytes base64-encoded, as text/plain."""
    if isinstance(mime, EmailMessage):
        mime = mime.as_bytes()
    if isinstance(mime, str):
        mime = mime.encode("utf-8")
    return base64.b64encode(mime)


class GraphMailClient:
    """One mailbox-agnostic client; ``sender`` picks the mailbox per call ('me' for delegated tokens)."""

    def __init__(self, session, credential, graph_url: str, api_version: str = "v1.0",
                 default_sender: str | None = None, timeout: float = 60.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.session = session
        self.credential = credential
        self.base_url = f"{graph_url.rstrip('/')}/{api_version}"
        self.default_sender = default_sender
        self.timeout = timeout
        if not 0 < max_message_bytes <= MAX_MESSAGE_BYTES:
            raise GraphConfigError("max_message_size_mb: must be between 1 and 150 (Exchange Online's range)")
        self.max_message_bytes = max_message_bytes

    def _user_path(self, sender: str | None) -> str:
        sender = sender or self.default_sender
        if not sender:
            raise GraphConfigError("sender: no mailbox to send from; set 'sender' in the connection or the call")
        if sender.lower() == "me":
            return "/me"
        return f"/users/{quote(sender, safe='@')}"

    def request(self, method: str, path: str, *, json_body=None, data: bytes | StreamingJson | None = None,
                content_type: str | None = None, expect=(200,)):
        """One authenticated call; a 401 refreshes the token once, other errors become typed exceptions."""
        if isinstance(data, StreamingJson):
            content_type = "application/json"
            if len(data) <= SMALL_BODY_BYTES:  # one send() for headers and body: no per-piece round trips
                data = b"".join(data)
        elif json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            content_type = "application/json"
        if data is not None and not self.fits_one_request(data):
            raise MessageTooLargeError(
                413, "RequestEntityTooLarge",
                f"the request would be {len(data):,} bytes; Graph accepts at most 4 MB per request "
                "(attachments count about 4/3 of their size once base64-encoded). MIME and Graph-shaped dicts "
                "go in one request; give a Message with attachments to send large files",
            )
        headers = {"client-request-id": str(uuid.uuid4())}
        if content_type:
            headers["Content-Type"] = content_type
        if data is None:
            headers["Content-Length"] = "0"
        else:
            headers["Content-Length"] = str(len(data))
        url = self.base_url + path
        for attempt in (1, 2):
            headers["Authorization"] = "Bearer " + self.credential.get_token()
            response = self.session.request(method, url, data=data, headers=headers, timeout=self.timeout)
            if response.status_code == 401 and attempt == 1:
                log.info("Graph answered 401 to %s %s; renewing the token once (request-id %s)",
                         method, path, response.headers.get("request-id", ""))
                self.credential.invalidate()
                continue
            break
        if response.status_code not in expect:
            raise error_from_response(response)
        return response

    # -- sending -------------------------------------------------------------------------------------

    def send_mail(self, message: Message | dict, *, sender: str | None = None, save_to_sent_items: bool = True):
        """One sendMail when the request fits in 4 MB, else draft + attachments + send; same result."""
        if isinstance(message, dict):  # Graph's own shape, attachments already base64: one request
            payload = {"message": graph_message(message, require_recipients=True)}
            if not save_to_sent_items:
                payload["saveToSentItems"] = False
            self.request("POST", self._user_path(sender) + "/sendMail", json_body=payload, expect=(202, 204))
            return
        message.require_recipients()
        self.check_size(message)
        document, streams = message_document(message)
        payload = {"message": document}
        if not save_to_sent_items:
            payload["saveToSentItems"] = False
        body = StreamingJson(payload, streams)
        if self.fits_one_request(body):
            self.request("POST", self._user_path(sender) + "/sendMail", data=body, expect=(202, 204))
            return
        log.info("The message is %.1f MB with attachments; sending it as a draft with %d attachment(s)",
                 message.size / MB, len(message.attachments))
        draft = self._build_draft(message, sender, None, delete_after_submit=not save_to_sent_items)
        try:
            self.send_draft(draft["id"], sender=sender)
        except GraphRequestError as err:
            if err.status < 500 and err.status != 429:  # definitely not sent: leave nothing behind
                self._discard_draft(draft["id"], sender)
            raise

    def send_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None):
        self.request("POST", self._user_path(sender) + "/sendMail", data=encode_mime(mime),
                     content_type="text/plain", expect=(202, 204))

    @staticmethod
    def fits_one_request(body) -> bool:
        return len(body) <= MAX_REQUEST_BYTES - REQUEST_SAFETY_MARGIN

    def check_size(self, message: Message) -> None:
        """The tenant's message size limit, checked before any request."""
        if message.size > self.max_message_bytes:
            raise MessageValidationError(
                "attachments", f"the message is {message.size / MB:.1f} MB but the limit is "
                f"{self.max_message_bytes / MB:g} MB (connection setting max_message_size_mb; Exchange Online's "
                "default is 35 MB and an admin can raise it to 150 MB): send fewer or smaller attachments")

    # -- drafts --------------------------------------------------------------------------------------

    def _messages_path(self, sender: str | None, folder: str | None) -> str:
        base = self._user_path(sender)
        return f"{base}/mailFolders/{quote(folder, safe='')}/messages" if folder else f"{base}/messages"

    def _message_path(self, sender: str | None, message_id: str) -> str:
        return f"{self._user_path(sender)}/messages/{quote(str(message_id), safe='')}"

    def create_draft(self, message: Message | dict, *, sender: str | None = None, folder: str | None = None) -> dict:
        """A draft with all its attachments, whatever their size (the large ones through upload sessions)."""
        if isinstance(message, dict):
            body = graph_message(message, require_recipients=False)
            return self.request("POST", self._messages_path(sender, folder), json_body=body, expect=(201,)).json()
        self.check_size(message)
        document, streams = message_document(message)
        body = StreamingJson(document, streams)
        if self.fits_one_request(body):
            return self.request("POST", self._messages_path(sender, folder), data=body, expect=(201,)).json()
        draft = self._build_draft(message, sender, folder)
        return {**draft, "hasAttachments": any(not a.is_inline for a in message.attachments)}

    def _build_draft(self, message: Message, sender: str | None, folder: str | None, *,
                     delete_after_submit: bool = False) -> dict:
        """Create the draft without attachments, then add each; on failure delete the draft."""
        document, _ = message_document(message, with_attachments=False)
        if delete_after_submit:
            document["singleValueExtendedProperties"] = [DELETE_AFTER_SUBMIT]
        draft = self.request("POST", self._messages_path(sender, folder), json_body=document, expect=(201,)).json()
        try:
            for attachment in message.attachments:
                self.add_attachment(draft["id"], attachment, sender=sender)
        except BaseException:
            self._discard_draft(draft["id"], sender)
            raise
        return draft

    def add_attachment(self, message_id: str, attachment, *, sender: str | None = None) -> None:
        """POST for attachments under 3 MB; an upload session (resumable, chunked) from 3 MB up."""
        path = self._message_path(sender, message_id) + "/attachments"
        if attachment.size < UPLOAD_SESSION_MIN_BYTES:
            self.request("POST", path, data=attachment_document(attachment), expect=(201,))
            return
        for session_attempt in (1, 2):
            created = self.request("POST", path + "/createUploadSession",
                                   json_body={"AttachmentItem": attachment.upload_item()}, expect=(201,)).json()
            upload = AttachmentUpload(self.session, created["uploadUrl"], attachment, timeout=self.timeout)
            try:
                upload.run()
                return
            except UploadFailedError as err:
                expired = isinstance(err.cause, GraphRequestError) and err.cause.status in (401, 404)
                if not expired or session_attempt == 2:
                    raise
                log.warning("Upload session for %s expired or vanished; starting a new one", attachment.name)

    def _discard_draft(self, message_id: str, sender: str | None) -> None:
        """Best effort: a half-built draft must not stay in the mailbox."""
        try:
            self.delete_message(message_id, sender=sender)
            log.info("Deleted the unfinished draft %s", message_id)
        except (GraphMailError, OSError) as err:
            log.warning("Could not delete the unfinished draft %s: %s", message_id, err)

    def delete_message(self, message_id: str, *, sender: str | None = None) -> None:
        self.request("DELETE", self._message_path(sender, message_id), expect=(204,))

    def create_draft_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None,
                          folder: str | None = None) -> dict:
        return self.request("POST", self._messages_path(sender, folder), data=encode_mime(mime),
                            content_type="text/plain", expect=(201,)).json()

    def send_draft(self, message_id: str, *, sender: str | None = None):
        if not message_id or not str(message_id).strip():
            raise GraphConfigError("message_id: empty draft id; pass the id returned when the draft was created")
        self.request("POST", self._message_path(sender, message_id) + "/send", expect=(202, 204))

    # -- reading -------------------------------------------------------------------------------------

    def get_message(self, message_id: str, *, sender: str | None = None) -> dict:
        return self.request("GET", self._message_path(sender, message_id)).json()
