"""GraphMailClient: the Graph mail endpoints over one requests session and one token source."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from email.message import EmailMessage
from urllib.parse import quote

from airflow_graph_mail.graph.errors import GraphConfigError, MessageTooLargeError, error_from_response
from airflow_graph_mail.mail.message import Message, graph_message

log = logging.getLogger(__name__)

# Graph refuses request bodies over 4 MB (base64 included); keep a margin for headers and framing.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
REQUEST_SAFETY_MARGIN = 64 * 1024


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
                 default_sender: str | None = None, timeout: float = 60.0):
        self.session = session
        self.credential = credential
        self.base_url = f"{graph_url.rstrip('/')}/{api_version}"
        self.default_sender = default_sender
        self.timeout = timeout

    def _user_path(self, sender: str | None) -> str:
        sender = sender or self.default_sender
        if not sender:
            raise GraphConfigError("sender: no mailbox to send from; set 'sender' in the connection or the call")
        if sender.lower() == "me":
            return "/me"
        return f"/users/{quote(sender, safe='@')}"

    def request(self, method: str, path: str, *, json_body=None, data: bytes | None = None,
                content_type: str | None = None, expect=(200,)):
        """One authenticated call; a 401 refreshes the token once, other errors become typed exceptions."""
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            content_type = "application/json"
        if data is not None and len(data) > MAX_REQUEST_BYTES - REQUEST_SAFETY_MARGIN:
            raise MessageTooLargeError(
                413, "RequestEntityTooLarge",
                f"the request would be {len(data):,} bytes; Graph accepts at most 4 MB per request "
                "(attachments count about 4/3 of their size once base64-encoded)",
            )
        headers = {"client-request-id": str(uuid.uuid4())}
        if content_type:
            headers["Content-Type"] = content_type
        if data is None:
            headers["Content-Length"] = "0"
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
        payload = {"message": graph_message(message, require_recipients=True)}
        if not save_to_sent_items:
            payload["saveToSentItems"] = False
        self.request("POST", self._user_path(sender) + "/sendMail", json_body=payload, expect=(202, 204))

    def send_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None):
        self.request("POST", self._user_path(sender) + "/sendMail", data=encode_mime(mime),
                     content_type="text/plain", expect=(202, 204))

    # -- drafts --------------------------------------------------------------------------------------

    def _messages_path(self, sender: str | None, folder: str | None) -> str:
        base = self._user_path(sender)
        return f"{base}/mailFolders/{quote(folder, safe='')}/messages" if folder else f"{base}/messages"

    def create_draft(self, message: Message | dict, *, sender: str | None = None, folder: str | None = None) -> dict:
        body = graph_message(message, require_recipients=False)
        return self.request("POST", self._messages_path(sender, folder), json_body=body, expect=(201,)).json()

    def create_draft_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None,
                          folder: str | None = None) -> dict:
        return self.request("POST", self._messages_path(sender, folder), data=encode_mime(mime),
                            content_type="text/plain", expect=(201,)).json()

    def send_draft(self, message_id: str, *, sender: str | None = None):
        if not message_id or not str(message_id).strip():
            raise GraphConfigError("message_id: empty draft id; pass the id returned when the draft was created")
        path = f"{self._user_path(sender)}/messages/{quote(str(message_id), safe='')}/send"
        self.request("POST", path, expect=(202, 204))

    # -- reading -------------------------------------------------------------------------------------

    def get_message(self, message_id: str, *, sender: str | None = None) -> dict:
        path = f"{self._user_path(sender)}/messages/{quote(str(message_id), safe='')}"
        return self.request("GET", path).json()
