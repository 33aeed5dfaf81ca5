"""GraphMailClient: the Graph mail endpoints over one requests session and one token source."""

from __future__ import annotations

import base64
import logging
from email.message import EmailMessage
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from airflow_graph_mail.graph.body import StreamingJson, attachment_document, message_document
from airflow_graph_mail.errors import (
    GraphConfigError, GraphConnectionError, GraphMailError, GraphRequestError, ItemNotFoundError,
    MessageSizeError, MessageValidationError, OutcomeUnknownError, ServiceUnavailableError, ThrottledError,
    UploadFailedError,
)
from airflow_graph_mail.graph.idempotency import key_filter, tag
from airflow_graph_mail.graph.pacing import DEFAULT_CONCURRENCY
from airflow_graph_mail.graph.retry import RetryBudget, RetryPolicy
from airflow_graph_mail.graph.transport import GraphTransport
from airflow_graph_mail.graph.upload import AttachmentUpload
from airflow_graph_mail.mail.allow_list import AllowedDomains
from airflow_graph_mail.mail.attachments import MB
from airflow_graph_mail.mail.graph_shape import graph_document
from airflow_graph_mail.mail.message import Message
from airflow_graph_mail.mail.recipients import check_sender
from airflow_graph_mail.mail.routing import mime_recipients

log = logging.getLogger(__name__)

# Attachments from 3 MB (decimal, as Microsoft writes it) go through an upload session; below, one POST
# (whose base64 body, under 4,000,000 bytes, stays inside the request limit).
UPLOAD_SESSION_MIN_BYTES = 3_000_000
# Exchange Online's default message size limit; an admin can raise it to 150 MB.
DEFAULT_MAX_MESSAGE_BYTES = 35 * MB
MAX_MESSAGE_BYTES = 150 * MB
# PidTagDeleteAfterSubmit: a sent draft leaves no copy in Sent Items (saveToSentItems=false on the draft path).
DELETE_AFTER_SUBMIT = {"id": "Boolean 0x0E01", "value": "true"}
# What a send reports: it went out now, or an earlier attempt had already sent it.
SENT, ALREADY_SENT = "sent", "already_sent"


def mime_bytes(mime: bytes | str | EmailMessage) -> bytes:
    if isinstance(mime, EmailMessage):
        return mime.as_bytes()
    if isinstance(mime, str):
        return mime.encode("utf-8")
    if isinstance(mime, (bytes, bytearray)):
        return bytes(mime)
    raise MessageValidationError("mime", f"expected MIME bytes, text or an email.message.EmailMessage, got "
                                 f"{type(mime).__name__}")


def encode_mime(mime: bytes | str | EmailMessage) -> bytes:
    """Graph's MIME endpoints take the RFC 5322 bytes base64-encoded, as text/plain."""
    return base64.b64encode(mime_bytes(mime))


class GraphMailClient(GraphTransport):
    """One mailbox-agnostic client; ``sender`` picks the mailbox per call ('me' for delegated tokens)."""

    def __init__(self, session, credential, graph_url: str, api_version: str = "v1.0",
                 default_sender: str | None = None, timeout: float = 60.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, retry: RetryPolicy | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY, allowed_recipients: AllowedDomains | None = None):
        super().__init__(session, credential, f"{graph_url.rstrip('/')}/{api_version}", timeout=timeout,
                         retry=retry, concurrency=concurrency)
        self.default_sender = check_sender("sender", default_sender) if default_sender is not None else None
        self.allowed_recipients = allowed_recipients
        if not 0 < max_message_bytes <= MAX_MESSAGE_BYTES:
            raise GraphConfigError("max_message_size_mb: must be between 1 and 150 (Exchange Online's range)")
        self.max_message_bytes = max_message_bytes

    def _user_path(self, sender: str | None) -> str:
        sender = sender if sender is not None else self.default_sender
        if sender is None:
            raise GraphConfigError("sender: no mailbox to send from; set 'sender' in the connection or the call")
        sender = check_sender("sender", sender)
        if sender.lower() == "me":
            return "/me"
        return f"/users/{quote(sender, safe='@')}"

    # -- sending -------------------------------------------------------------------------------------

    def send_mail(self, message: Message | dict, *, sender: str | None = None, save_to_sent_items: bool = True,
                  idempotency_key: str | None = None, check_first: bool = False) -> str:
        """Send once: one sendMail when the request fits in 4 MB, else draft + attachments + send.

        With an ``idempotency_key`` the message is tagged, and after an unclear answer the client looks
        for it (Sent Items, or the draft by its immutable id) and sends again only if it is not there.
        ``check_first`` looks before the first attempt too (an Airflow retry). Returns SENT or ALREADY_SENT.
        """
        self._user_path(sender)
        if isinstance(message, dict):  # Graph's own shape, attachments already base64: one request
            document, streams = graph_document(message, require_recipients=True), {}
        else:
            message.require_recipients()
            self.check_size(message)
            document, streams = message_document(message)
        self.check_recipients(document if isinstance(message, dict) else message)
        budget = self.retry.budget()
        tag(document, idempotency_key)
        if idempotency_key and check_first:
            if not save_to_sent_items:
                log.warning("Cannot check whether %r was sent before: save_to_sent_items=False leaves no copy "
                            "to find", idempotency_key)
            elif self._was_sent(idempotency_key, sender, budget):
                log.info("Message %r was sent by an earlier attempt; not sending it again", idempotency_key)
                return ALREADY_SENT
        payload = {"message": document}
        if not save_to_sent_items:
            payload["saveToSentItems"] = False
        body = StreamingJson(payload, streams)
        if isinstance(message, dict) or self.fits_one_request(body):
            path = self._user_path(sender) + "/sendMail"
            check = None
            if idempotency_key and save_to_sent_items:
                def check():
                    return self._was_sent(idempotency_key, sender, budget)
            self._once(lambda: self.request("POST", path, data=body, expect=(202, 204), budget=budget), check,
                       budget, idempotency_key)
            return SENT
        log.info("The message is %.1f MB with attachments; sending it as a draft with %d attachment(s)",
                 message.size / MB, len(message.attachments))
        if idempotency_key and check_first:  # a crashed attempt may have left its draft
            self._discard_drafts(idempotency_key, sender, None, budget)
        draft = self._build_draft(message, sender, None, delete_after_submit=not save_to_sent_items,
                                  idempotency_key=idempotency_key, budget=budget)
        try:
            self._once(lambda: self._send(draft["id"], sender, budget),
                       lambda: self._draft_was_sent(draft["id"], sender, budget), budget, idempotency_key)
        except GraphRequestError as err:
            if err.status < 500 and err.status != 429:  # definitely not sent: leave nothing behind
                self._discard_draft(draft["id"], sender)
            raise
        return SENT

    def _once(self, submit, was_sent, budget: RetryBudget, key: str | None) -> None:
        """Submit; after an unclear answer, ask ``was_sent`` and submit again only when it says no."""
        while True:
            try:
                submit()
                return
            except OutcomeUnknownError as err:
                if was_sent is None:
                    raise OutcomeUnknownError(err.method, err.path, err.cause, hint=(
                        "not sent again, since it could arrive twice; give an idempotency key and keep "
                        "save_to_sent_items on so that the client can check")) from err
                delay = budget.delay()
                if delay is None:
                    raise
                log.warning("%s %s: %s; checking in %.1fs whether message %r went out", err.method, err.path,
                            err.cause, delay, key)
                budget.wait(delay)
                unclear = err
            if _looked_up(was_sent, unclear):
                log.info("Message %r had been sent despite the unclear answer; not sending it again", key)
                return
            log.warning("Message %r was not sent; sending it again", key)

    def send_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None):
        """MIME carries no extended property to look up, so an unclear answer is raised, never resent."""
        data = self._checked_mime(mime, sender, require_recipients=True)
        self.request("POST", self._user_path(sender) + "/sendMail", data=encode_mime(data),
                     content_type="text/plain", expect=(202, 204), what="mime")

    def _checked_mime(self, mime, sender: str | None, *, require_recipients: bool) -> bytes:
        """The MIME's recipients read strictly (and allow-listed), before any request."""
        data = mime_bytes(mime)
        self._user_path(sender)
        recipients = mime_recipients(data)
        if require_recipients and not recipients:
            raise MessageValidationError("mime", "no recipients: the MIME has no To, Cc or Bcc header")
        self.check_recipients(data)
        return data

    def check_recipients(self, message) -> None:
        """With an allow-list on the connection, every to/cc/bcc address must be in an allowed domain."""
        if self.allowed_recipients is not None:
            self.allowed_recipients.check(message.as_bytes() if isinstance(message, EmailMessage) else message)

    def check_size(self, message: Message) -> None:
        """The tenant's message size limit, checked before any request; the field named is the one to cut."""
        if message.size > self.max_message_bytes:
            field = "body" if message.text_size > self.max_message_bytes else "attachments"
            advice = "shorten the body, or attach the data as a file" if field == "body" else \
                "send fewer or smaller attachments"
            raise MessageSizeError(
                field, f"the message is {message.size / MB:.1f} MB but the limit is "
                f"{self.max_message_bytes / MB:g} MB (connection setting max_message_size_mb; Exchange Online's "
                f"default is 35 MB and an admin can raise it to 150 MB): {advice}")

    # -- finding a message again ---------------------------------------------------------------------

    def find_by_key(self, key: str, *, sender: str | None = None, folder: str = "sentitems",
                    budget: RetryBudget | None = None) -> list[dict]:
        """Messages in ``folder`` tagged with this idempotency key (immutable ids)."""
        query = urlencode({"$filter": key_filter(key), "$select": "id,subject,isDraft,webLink", "$top": "10"},
                          quote_via=quote)
        path = f"{self._messages_path(sender, folder)}?{query}"
        return self.request("GET", path, budget=budget).json().get("value", [])

    def _was_sent(self, key: str, sender: str | None, budget: RetryBudget) -> bool:
        """Exchange files a submitted mail in the Outbox, then in Sent Items."""
        return any(self.find_by_key(key, sender=sender, folder=folder, budget=budget)
                   for folder in ("sentitems", "outbox"))

    def _is_draft(self, message_id: str, sender: str | None, budget: RetryBudget) -> bool | None:
        """Whether the message is still a draft; None when it is gone."""
        try:
            found = self.request("GET", self._message_path(sender, message_id) + "?$select=id,isDraft",
                                 budget=budget).json()
        except ItemNotFoundError:
            return None
        return found.get("isDraft", True)

    def _draft_was_sent(self, draft_id: str, sender: str | None, budget: RetryBudget) -> bool:
        """A sent draft keeps its immutable id in Sent Items (isDraft false), or is gone (not saved)."""
        return self._is_draft(draft_id, sender, budget) is not True

    def _discard_drafts(self, key: str, sender: str | None, folder: str | None, budget: RetryBudget) -> None:
        for draft in self.find_by_key(key, sender=sender, folder=folder or "drafts", budget=budget):
            if draft.get("isDraft", True):
                log.info("Deleting draft %s left by an earlier attempt of %r", draft["id"], key)
                self._discard_draft(draft["id"], sender)

    # -- drafts --------------------------------------------------------------------------------------

    def _messages_path(self, sender: str | None, folder: str | None) -> str:
        base = self._user_path(sender)
        return f"{base}/mailFolders/{quote(folder, safe='')}/messages" if folder else f"{base}/messages"

    def _message_path(self, sender: str | None, message_id: str) -> str:
        return f"{self._user_path(sender)}/messages/{quote(str(message_id), safe='')}"

    def create_draft(self, message: Message | dict, *, sender: str | None = None, folder: str | None = None,
                     idempotency_key: str | None = None, check_first: bool = False) -> dict:
        """A draft with all its attachments, whatever their size (the large ones through upload sessions).

        With an idempotency key, ``check_first`` replaces a draft an earlier attempt left, and an unclear
        answer is resolved by looking the draft up instead of creating a second one.
        """
        self._user_path(sender)
        if isinstance(message, dict):
            document = graph_document(message, require_recipients=False)
            self.check_recipients(document)
        else:
            self.check_recipients(message)
            self.check_size(message)
        budget = self.retry.budget()
        if idempotency_key and check_first:
            self._discard_drafts(idempotency_key, sender, folder, budget)
        if isinstance(message, dict):
            return self._create(tag(document, idempotency_key), sender, folder, idempotency_key, budget)
        document, streams = message_document(message)
        body = StreamingJson(tag(document, idempotency_key), streams)
        if self.fits_one_request(body):
            return self._create(body, sender, folder, idempotency_key, budget)
        draft = self._build_draft(message, sender, folder, idempotency_key=idempotency_key, budget=budget)
        return {**draft, "hasAttachments": any(not a.is_inline for a in message.attachments)}

    def _create(self, body, sender: str | None, folder: str | None, key: str | None, budget: RetryBudget,
                what: str = "message") -> dict:
        """POST a new message; after an unclear answer, the one it made (found by key) or a new one."""
        path = self._messages_path(sender, folder)
        while True:
            try:
                if isinstance(body, dict):
                    return self.request("POST", path, json_body=body, expect=(201,), budget=budget,
                                        what=what).json()
                return self.request("POST", path, data=body, expect=(201,), budget=budget, what=what).json()
            except OutcomeUnknownError as err:
                delay = budget.delay() if key else None
                if delay is None:
                    raise
                budget.wait(delay)
                unclear = err
            found = _looked_up(lambda: self.find_by_key(key, sender=sender, folder=folder or "drafts",
                                                        budget=budget), unclear)
            if found:
                return self.get_message(found[0]["id"], sender=sender)

    def _build_draft(self, message: Message, sender: str | None, folder: str | None, *,
                     delete_after_submit: bool = False, idempotency_key: str | None = None,
                     budget: RetryBudget | None = None) -> dict:
        """Create the draft without attachments, then add each; on failure delete the draft.

        An unclear answer while adding an attachment (which may or may not be there now) restarts the
        draft from scratch, within the retry budget."""
        budget = budget or self.retry.budget()
        document, _ = message_document(message, with_attachments=False)
        if delete_after_submit:
            document.setdefault("singleValueExtendedProperties", []).append(DELETE_AFTER_SUBMIT)
        tag(document, idempotency_key)
        while True:
            draft = self._create(document, sender, folder, idempotency_key, budget, what="body")
            try:
                for attachment in message.attachments:
                    self.add_attachment(draft["id"], attachment, sender=sender, budget=budget)
                return draft
            except OutcomeUnknownError as err:
                self._discard_draft(draft["id"], sender)
                delay = budget.delay()
                if delay is None:
                    raise
                log.warning("%s; building the draft again in %.1fs", err, delay)
                budget.wait(delay)
            except BaseException:
                self._discard_draft(draft["id"], sender)
                raise

    def add_attachment(self, message_id: str, attachment, *, sender: str | None = None,
                       budget: RetryBudget | None = None) -> None:
        """POST for attachments under 3 MB; an upload session (resumable, chunked) from 3 MB up."""
        path = self._message_path(sender, message_id) + "/attachments"
        if attachment.size < UPLOAD_SESSION_MIN_BYTES:
            self.request("POST", path, data=attachment_document(attachment), expect=(201,), budget=budget)
            return
        for session_attempt in (1, 2):
            # An extra upload session is harmless (it expires unused), so this POST may be repeated.
            created = self.request("POST", path + "/createUploadSession", idempotent=True, budget=budget,
                                   json_body={"AttachmentItem": attachment.upload_item()}, expect=(201,)).json()
            self._mask_url_token(created["uploadUrl"])
            upload = AttachmentUpload(self.session, created["uploadUrl"], attachment, timeout=self.timeout)
            try:
                upload.run()
                return
            except UploadFailedError as err:
                expired = isinstance(err.cause, GraphRequestError) and err.cause.status in (401, 404)
                if not expired or session_attempt == 2:
                    raise
                log.warning("Upload session for %s expired or vanished; starting a new one", attachment.name)

    def _mask_url_token(self, url: str) -> None:
        """The upload URL's own token goes to the log masker too (error text redacts it regardless)."""
        on_secret = getattr(self.credential, "on_secret", None)
        if on_secret is not None:
            for name, value in parse_qsl(urlsplit(url).query):
                if name.lower() == "authtoken" and value:
                    on_secret(value)

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
        data = self._checked_mime(mime, sender, require_recipients=False)
        return self.request("POST", self._messages_path(sender, folder), data=encode_mime(data),
                            content_type="text/plain", expect=(201,), what="mime").json()

    def send_draft(self, message_id: str, *, sender: str | None = None, check_first: bool = False) -> str:
        """Send a draft once: after an unclear answer, the draft (by its immutable id) tells whether it went.

        ``check_first`` (an Airflow retry) returns ALREADY_SENT for a draft that is no longer a draft.
        """
        if not isinstance(message_id, str):
            raise GraphConfigError(f"message_id: expected the draft's id as text, got {type(message_id).__name__}")
        if not message_id.strip():
            raise GraphConfigError("message_id: empty draft id; pass the id returned when the draft was created")
        self._user_path(sender)
        budget = self.retry.budget()
        if self.allowed_recipients is not None:  # a person may have added recipients in Outlook since
            fields = "toRecipients,ccRecipients,bccRecipients"
            draft = self.request("GET", self._message_path(sender, message_id) + f"?$select={fields}",
                                 budget=budget).json()
            self.check_recipients({k: draft.get(k) or [] for k in fields.split(",")})
        if check_first and self._is_draft(message_id, sender, budget) is False:
            log.info("Message %s is no longer a draft (sent by an earlier try); not sending it again", message_id)
            return ALREADY_SENT
        self._once(lambda: self._send(message_id, sender, budget),
                   lambda: self._draft_was_sent(message_id, sender, budget), budget, message_id)
        return SENT

    def _send(self, message_id: str, sender: str | None, budget: RetryBudget) -> None:
        self.request("POST", self._message_path(sender, message_id) + "/send", expect=(202, 204), budget=budget)

    # -- reading -------------------------------------------------------------------------------------

    def get_message(self, message_id: str, *, sender: str | None = None) -> dict:
        return self.request("GET", self._message_path(sender, message_id)).json()


def _looked_up(lookup, unclear: OutcomeUnknownError):
    """The answer of a lookup made after an unclear answer; when the lookup gets no answer either, the
    outcome stays unknown (a retried task looks again)."""
    try:
        return lookup()
    except (GraphConnectionError, ServiceUnavailableError, ThrottledError) as err:
        raise OutcomeUnknownError(unclear.method, unclear.path, unclear.cause, hint=(
            f"looking it up failed too ({err}); a retried task looks it up again before sending")) from err
