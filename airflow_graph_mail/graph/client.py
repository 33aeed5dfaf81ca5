"""GraphMailClient: the Graph mail calls (send, drafts, attachments, lookups) over a GraphTransport.

Every message is checked once, at the edge (``prepare``): recipients, size, the allow-list. Every request
that changes a mailbox goes through ``submit_once``; reads are retried by the transport.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from functools import cached_property, lru_cache
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from airflow_graph_mail.errors import (
    AccessDeniedError,
    GraphConfigError,
    GraphMailError,
    GraphRequestError,
    ItemNotFoundError,
    MailboxNotFoundError,
    MalformedIdError,
    MessageSizeError,
    MessageValidationError,
    NoLookupError,
    UnexpectedAnswerError,
)
from airflow_graph_mail.graph.body import StreamingJson, attachment_document, message_document
from airflow_graph_mail.graph.call import Call
from airflow_graph_mail.graph.config import DEFAULT_MAX_MESSAGE_BYTES, ClientConfig
from airflow_graph_mail.graph.credentials import build_credential, session_for
from airflow_graph_mail.graph.limits import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, MailboxLimits
from airflow_graph_mail.graph.retry import RetryPolicy
from airflow_graph_mail.graph.submit import submit_once
from airflow_graph_mail.graph.transport import GraphTransport, fits_one_request
from airflow_graph_mail.graph.upload import AttachmentUpload
from airflow_graph_mail.mail.allow_list import AllowedDomains
from airflow_graph_mail.mail.attachments import MB
from airflow_graph_mail.mail.graph_shape import graph_document
from airflow_graph_mail.mail.idempotency import PROCESS_REF_SECRET, key_filter, ref_for, tag
from airflow_graph_mail.mail.message import Message
from airflow_graph_mail.mail.recipients import RECIPIENT_FIELDS, Recipient, check_sender, recipient_limit_problem
from airflow_graph_mail.mail.routing import graph_recipients, mime_bytes, mime_recipients, reply_recipients
from airflow_graph_mail.outcomes import Outcome, Status

log = logging.getLogger(__name__)

# Attachments from 3 MB (decimal, as Microsoft writes it) go through an upload session; below, one POST
# (whose base64 body, under 4,000,000 bytes, stays inside the request limit).
UPLOAD_SESSION_MIN_BYTES = 3_000_000
# PidTagDeleteAfterSubmit: a sent draft leaves no copy in Sent Items (saveToSentItems=false on the draft path).
DELETE_AFTER_SUBMIT = {"id": "Boolean 0x0E01", "value": "true"}
_NOT_AGAIN = ("not sent again, since it could arrive twice; give an idempotency key and keep save_to_sent_items "
              "on so that the client can check")


def encode_mime(mime: bytes | str | EmailMessage) -> bytes:
    """Graph's MIME endpoints take the RFC 5322 bytes base64-encoded, as text/plain."""
    return base64.b64encode(mime_bytes(mime))


# A secret, or a function that finds one; None for a secret of this process.
RefSecret = str | bytes | Callable[[], str | bytes | None] | None


@dataclass
class Prepared:
    """A message checked once, at the edge, in the one form every later step reads: Graph's JSON
    (attachments streamed in at send time), its subject, and its recipients as parsed while checking. The
    allow-list, the outcome and the log read them from here, never parsing the message again."""

    document: dict
    subject: str
    to: list[Recipient]
    cc: list[Recipient]
    bcc: list[Recipient]
    reply_to: list[Recipient]
    streams: dict = field(default_factory=dict)
    message: Message | None = None  # None for a Graph-shaped dict (its attachments are inline already)

    @classmethod
    def of_message(cls, message: Message) -> Prepared:
        document, streams = message_document(message)
        return cls(document, message.subject, message.to, message.cc, message.bcc, message.reply_to, streams,
                   message)

    @classmethod
    def of_graph(cls, message: Mapping, *, require_recipients: bool) -> Prepared:
        """A Graph-shaped dict (property names in any case), checked as a Message is."""
        document, found = graph_document(message, require_recipients=require_recipients)
        return cls(document, str(document.get("subject") or ""), found["to"], found["cc"], found["bcc"],
                   found["reply_to"])

    @property
    def recipient_count(self) -> int:
        return len(self.to) + len(self.cc) + len(self.bcc)

    def addresses(self) -> list[tuple[str, str]]:
        """(field, address) for every recipient and Reply-To, the field named as the caller gave it."""
        names = {name: name for name in RECIPIENT_FIELDS} if self.message is not None else RECIPIENT_FIELDS
        return [(names[name], r.address) for name in RECIPIENT_FIELDS for r in getattr(self, name)]

    def outcome(self, position: int, key: str | None, status: Status, error: str = "", permanent: bool = False,
                ref: str = "", accepted_at: str = "", leaves_at: str = "") -> Outcome:
        """This message's outcome: its to, cc and bcc as sent (a bounce report believes a report only about
        these) and the bounce ref it carries."""
        return Outcome(position, key, [r.address for r in self.to], self.subject, status, error, permanent,
                       cc=[r.address for r in self.cc], bcc=[r.address for r in self.bcc], ref=ref,
                       accepted_at=accepted_at, leaves_at=leaves_at)

    def describe(self) -> str:
        return f"{self.subject!r} to {self.recipient_count} recipient(s)"


class GraphMailClient:
    """The mail calls of one connection; ``sender`` picks the mailbox per call ('me' for delegated tokens).

    ``ref_secret`` keys the bounce ref of every keyed mail (``mail/idempotency.py``): give the deployment's, the same in
    every process, so that a retry elsewhere computes the same ref (or a function that finds it, asked at the
    first keyed mail); without one, a secret of this process."""

    def __init__(self, transport: GraphTransport, *, default_sender: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, allowed_recipients: AllowedDomains | None = None,
                 ref_secret: RefSecret = None, limits: MailboxLimits | None = None,
                 delivery_guarantee: str = EXACTLY_ONCE):
        """``max_message_bytes`` as ``graph.config`` checked it (the tenant's limit, 1 to 150 MB); ``limits`` the
        mailbox's sending limits; ``delivery_guarantee`` what a retry does when it may not look in the mailbox
        (``graph.limits``)."""
        self.transport = transport
        self.limits = limits or MailboxLimits()
        self.delivery_guarantee = delivery_guarantee
        self._ref_secret_source = ref_secret
        self.default_sender = check_sender("sender", default_sender) if default_sender is not None else None
        self.allowed_recipients = allowed_recipients
        self.max_message_bytes = max_message_bytes

    @classmethod
    def from_config(cls, config: ClientConfig, *, ref_secret: RefSecret = None) -> GraphMailClient:
        session = session_for(config)
        credential = build_credential(config, lambda: session_for(config))
        transport = GraphTransport(session, credential, f"{config.graph_url}/{config.api_version}",
                                   timeout=config.timeout,
                                   retry=RetryPolicy(max_wait=config.retry_max_wait, backoff=config.retry_backoff))
        return cls(transport, default_sender=config.sender, max_message_bytes=config.max_message_bytes,
                   ref_secret=ref_secret or config.ref_secret,
                   allowed_recipients=config.allowed_recipients, limits=config.limits,
                   delivery_guarantee=config.delivery_guarantee)

    def ref_for(self, key: str | None) -> str:
        """The bounce ref a mail sent with this idempotency key carries ("" without a key)."""
        return ref_for(key, self._ref_secret) if key else ""

    @cached_property
    def _ref_secret(self) -> str | bytes:
        source = self._ref_secret_source
        return (source() if callable(source) else source) or PROCESS_REF_SECRET

    @property
    def concurrency(self) -> int:
        return self.transport.concurrency

    def call(self, sender: str | None) -> Call:
        """A new operation on the given mailbox (or the connection's), checked before any request."""
        if sender is None:  # the connection's, checked when the client was made
            if self.default_sender is None:
                raise GraphConfigError("sender: no mailbox to send from; set 'sender' in the connection or the call")
            return self.transport.call(self.default_sender)
        return self.transport.call(check_sender("sender", sender))

    # -- the edge: every check, once ---------------------------------------------------------------------

    def prepare(self, message: Message | Mapping | Prepared, *, require_recipients: bool = True) -> Prepared:
        """The edge: a Message, a Graph-shaped dict or a Prepared -> one checked form (recipients, the tenant's
        size limit, the allow-list), built once; a Prepared is returned as it is."""
        if isinstance(message, Prepared):
            return message
        if isinstance(message, Message):
            if require_recipients:
                message.require_recipients()
            self.check_size(message)
            prepared = Prepared.of_message(message)
        elif isinstance(message, Mapping):
            prepared = Prepared.of_graph(message, require_recipients=require_recipients)
        else:
            raise MessageValidationError("message", f"expected a Message or a Graph message dict, not "
                                         f"{type(message).__name__}")
        self.check_recipient_limit(prepared.recipient_count)
        self._check_allowed(prepared.addresses())
        return prepared

    def check_recipient_limit(self, count: int) -> None:
        """The mailbox's recipients per message (Exchange Online: 500, an admin's 1 to 1000): more would be
        accepted, then bounce with 5.5.3 to every recipient."""
        if count > self.limits.recipients_per_message:
            raise MessageValidationError("to/cc/bcc", recipient_limit_problem(count,
                                                                             self.limits.recipients_per_message))

    def _check_allowed(self, addresses: Iterable[tuple[str, str]]) -> None:
        """With an allow-list on the connection, every address must be in an allowed domain."""
        if self.allowed_recipients is not None:
            self.allowed_recipients.check(addresses)

    def check_size(self, message: Message) -> None:
        """The tenant's message size limit; the field named is the one to cut."""
        if message.size > self.max_message_bytes:
            field_name = "body" if message.text_size > self.max_message_bytes else "attachments"
            advice = "shorten the body, or attach the data as a file" if field_name == "body" else \
                "send fewer or smaller attachments"
            raise MessageSizeError(
                field_name, f"the message is {message.size / MB:.1f} MB but the limit is "
                f"{self.max_message_bytes / MB:g} MB (connection setting max_message_size_mb; Exchange Online's "
                f"default is 35 MB and an admin can raise it to 150 MB): {advice}")

    def _checked_mime(self, mime, *, require_recipients: bool) -> bytes:
        """MIME's recipients (and, with an allow-list, where replies go) read strictly, once."""
        data = mime_bytes(mime)
        routed = mime_recipients(data)
        if require_recipients and not routed:
            raise MessageValidationError("mime", "no recipients: the MIME has no To, Cc or Bcc header")
        self.check_recipient_limit(len(routed))
        if self.allowed_recipients is not None:
            self._check_allowed((header, r.address) for header, r in [*routed, *reply_recipients(data)])
        return data

    # -- sending -----------------------------------------------------------------------------------------

    def send_mail(self, message: Message | dict | Prepared, *, sender: str | None = None,
                  save_to_sent_items: bool = True, idempotency_key: str | None = None,
                  check_first: bool = False, looked_up: bool = False) -> Status:
        """Send once: one sendMail when the request fits in 4 MB, else draft + attachments + send.

        With an ``idempotency_key`` the message is tagged, and after an unclear answer the client looks
        for it (Sent Items, or the draft by its immutable id) and sends again only if it is not there.
        ``check_first`` looks before the first attempt too (an Airflow retry); ``looked_up``: the caller looked
        already (``was_sent``) and did not find it, so only a draft a crashed attempt left is replaced.
        """
        call = self.call(sender)
        prepared = self.prepare(message)
        key = idempotency_key
        document = tag(dict(prepared.document), key, self._ref_secret) if key else prepared.document
        if key and check_first and not looked_up:
            if not save_to_sent_items:
                log.warning("Cannot check whether %r was sent before: save_to_sent_items=False leaves no copy "
                            "to find", key)
            else:
                found = self._sent_before(call, key, retry=True)
                if found:
                    log.info("Message %r was sent by an earlier attempt; not sending it again", key)
                    return Status.ALREADY_SENT
                if found is None and self.delivery_guarantee == AT_MOST_ONCE:
                    return Status.NOT_RESENT
        payload: dict = {"message": document}
        if not save_to_sent_items:
            payload["saveToSentItems"] = False
        body = StreamingJson(payload, prepared.streams)
        if prepared.message is None or fits_one_request(body):
            lookup = (lambda: self._sent_before(call, key, retry=False)) if key and save_to_sent_items else None
            submit_once(call, lambda: self.transport.request(call, "POST", call.user_path + "/sendMail", data=body,
                                                             expect=(202, 204)),
                        lookup, what=f"message {key!r}", no_lookup_hint=_NOT_AGAIN)
            return Status.SENT
        log.info("The message is %.1f MB with attachments; sending it as a draft with %d attachment(s)",
                 prepared.message.size / MB, len(prepared.message.attachments))
        if key and check_first:  # a crashed attempt may have left its draft
            self._discard_drafts(call, key, None)
        draft = self._build_draft(call, prepared.message, None, key, delete_after_submit=not save_to_sent_items)
        try:
            submit_once(call, lambda: self._send(call, draft["id"]), lambda: self._draft_was_sent(call, draft["id"]),
                        what=f"draft of {key!r}")
        except GraphRequestError as err:
            if err.permanent:  # definitely not sent: leave nothing behind
                self._discard_draft(call, draft["id"])
            raise
        return Status.SENT

    def send_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None) -> Status:
        """MIME carries no extended property to look up, so an unclear answer is raised, never resent."""
        call = self.call(sender)
        data = encode_mime(self._checked_mime(mime, require_recipients=True))
        submit_once(call, lambda: self.transport.request(call, "POST", call.user_path + "/sendMail", data=data,
                                                         content_type="text/plain", expect=(202, 204), what="mime"),
                    None, what="MIME message", no_lookup_hint="MIME carries no idempotency key to look up, so it "
                    "is not sent again")
        return Status.SENT

    def _send(self, call: Call, message_id: str) -> None:
        self.transport.request(call, "POST", call.message_path(message_id) + "/send", expect=(202, 204))

    # -- drafts ------------------------------------------------------------------------------------------

    def create_draft(self, message: Message | dict | Prepared, *, sender: str | None = None,
                     folder: str | None = None, idempotency_key: str | None = None,
                     check_first: bool = False) -> dict:
        """A draft with all its attachments, whatever their size (the large ones through upload sessions).

        With an idempotency key, ``check_first`` replaces a draft an earlier attempt left, and an unclear
        answer is resolved by looking the draft up instead of creating a second one.
        """
        call = self.call(sender)
        prepared = self.prepare(message, require_recipients=False)
        key = idempotency_key
        if key and check_first:
            self._discard_drafts(call, key, folder)
        if prepared.message is None:
            return self._create(call, tag(dict(prepared.document), key, self._ref_secret), folder, key)
        body = StreamingJson(tag(dict(prepared.document), key, self._ref_secret), prepared.streams)
        if fits_one_request(body):
            return self._create(call, body, folder, key)
        draft = self._build_draft(call, prepared.message, folder, key)
        return {**draft, "hasAttachments": any(not a.is_inline for a in prepared.message.attachments)}

    def create_draft_mime(self, mime: bytes | str | EmailMessage, *, sender: str | None = None,
                          folder: str | None = None) -> dict:
        call = self.call(sender)
        data = encode_mime(self._checked_mime(mime, require_recipients=False))
        return submit_once(call, lambda: self.transport.request(
            call, "POST", call.messages_path(folder), data=data, content_type="text/plain", expect=(201,),
            what="mime").json(), None, what="MIME draft", no_lookup_hint="MIME carries no idempotency key to look "
            "up, so the draft is not created again")

    def _create(self, call: Call, body, folder: str | None, key: str | None, what: str = "message") -> dict:
        """POST a new message; after an unclear answer, the one it made (found by key) or a new one."""
        def submit() -> dict:
            path = call.messages_path(folder)
            if isinstance(body, dict):
                return self.transport.request(call, "POST", path, json_body=body, expect=(201,), what=what).json()
            return self.transport.request(call, "POST", path, data=body, expect=(201,), what=what).json()

        def lookup() -> dict | None:
            found = self.find_by_key(str(key), call=call, folder=folder or "drafts")
            return self.get_message(found[0]["id"], call=call) if found else None

        return submit_once(call, submit, lookup if key else None, what=f"draft {key!r}",
                           no_lookup_hint="not created again, since there could be two; give an idempotency key")

    def _build_draft(self, call: Call, message: Message, folder: str | None, key: str | None, *,
                     delete_after_submit: bool = False) -> dict:
        """Create the draft without attachments, then add each; on failure delete the draft."""
        document, _ = message_document(message, with_attachments=False)
        if delete_after_submit:
            document.setdefault("singleValueExtendedProperties", []).append(DELETE_AFTER_SUBMIT)
        draft = self._create(call, tag(document, key, self._ref_secret), folder, key, what="body")
        try:
            for position, attachment in enumerate(message.attachments):
                self.add_attachment(draft["id"], attachment, call=call, position=position)
        except BaseException:
            self._discard_draft(call, draft["id"])
            raise
        return draft

    def add_attachment(self, message_id: str, attachment, *, sender: str | None = None, call: Call | None = None,
                       position: int | None = None) -> None:
        """POST under 3 MB, an upload session (resumable, chunked) from 3 MB up. An unclear answer is settled
        by counting the draft's attachments again (``position``: how many it had before, when known)."""
        call = call or self.call(sender)
        before = self.attachment_count(message_id, call=call) if position is None else position

        def lookup() -> bool:
            return self.attachment_count(message_id, call=call) > before

        submit_once(call, lambda: self._attach(call, message_id, attachment), lookup,
                    what=f"attachment {attachment.name!r}")

    def _attach(self, call: Call, message_id: str, attachment) -> bool:
        path = call.message_path(message_id) + "/attachments"
        if attachment.size < UPLOAD_SESSION_MIN_BYTES:
            self.transport.request(call, "POST", path, data=attachment_document(attachment), expect=(201,))
            return True
        # An extra upload session is harmless (it expires unused), so this POST may be repeated.
        created = self.transport.request(call, "POST", path + "/createUploadSession", idempotent=True,
                                         json_body={"AttachmentItem": attachment.upload_item()},
                                         expect=(201,)).json()
        self._mask_url_token(created["uploadUrl"])
        AttachmentUpload(self.transport, call, created["uploadUrl"], attachment).run()
        return True

    def attachment_count(self, message_id: str, *, call: Call) -> int:
        answer = self.transport.request(call, "GET", call.message_path(message_id) + "/attachments?$select=id")
        return len(answer.json().get("value", []))

    def _mask_url_token(self, url: str) -> None:
        """The upload URL's own token goes to the log masker too (error text redacts it regardless)."""
        on_secret = getattr(self.transport.credential, "on_secret", None)
        if on_secret is not None:
            for name, value in parse_qsl(urlsplit(url).query):
                if name.lower() == "authtoken" and value:
                    on_secret(value)

    def send_draft(self, message_id: str, *, sender: str | None = None, check_first: bool = False) -> Status:
        """Send a draft once: after an unclear answer, the draft (by its immutable id) tells whether it went.

        ``check_first`` (an Airflow retry) returns ALREADY_SENT for a draft that is no longer a draft.
        """
        if not isinstance(message_id, str):
            raise GraphConfigError(f"message_id: expected the draft's id as text, got {type(message_id).__name__}")
        if not message_id.strip():
            raise GraphConfigError("message_id: empty draft id; pass the id returned when the draft was created")
        call = self.call(sender)
        if self.allowed_recipients is not None:  # a person may have added recipients (or a Reply-To) since
            fields = "toRecipients,ccRecipients,bccRecipients,replyTo"
            draft = self.transport.request(call, "GET", call.message_path(message_id) + f"?$select={fields}").json()
            self._check_allowed(graph_recipients({k: draft.get(k) or [] for k in fields.split(",")}))
        if check_first and self._is_draft(call, message_id) is False:
            log.info("Message %s is no longer a draft (sent by an earlier try); not sending it again", message_id)
            return Status.ALREADY_SENT
        submit_once(call, lambda: self._send(call, message_id), lambda: self._draft_was_sent(call, message_id),
                    what=f"draft {message_id}")
        return Status.SENT

    def _discard_drafts(self, call: Call, key: str, folder: str | None) -> None:
        for draft in self.find_by_key(key, call=call, folder=folder or "drafts"):
            if draft.get("isDraft", True):
                log.info("Deleting draft %s left by an earlier attempt of %r", draft["id"], key)
                self._discard_draft(call, draft["id"])

    def _discard_draft(self, call: Call, message_id: str) -> None:
        """Best effort: a half-built draft must not stay in the mailbox."""
        try:
            self.transport.request(call, "DELETE", call.message_path(message_id), expect=(204,))
            log.info("Deleted the unfinished draft %s", message_id)
        except GraphMailError as err:
            log.warning("Could not delete the unfinished draft %s: %s", message_id, err)

    def delete_message(self, message_id: str, *, sender: str | None = None) -> None:
        call = self.call(sender)
        self.transport.request(call, "DELETE", call.message_path(message_id), expect=(204,))

    # -- finding a message again -------------------------------------------------------------------------

    def find_by_key(self, key: str, *, sender: str | None = None, folder: str = "sentitems",
                    call: Call | None = None) -> list[dict]:
        """Messages in ``folder`` tagged with this idempotency key (immutable ids)."""
        call = call or self.call(sender)
        query = urlencode({"$filter": key_filter(key), "$select": "id,subject,isDraft,webLink", "$top": "10"},
                          quote_via=quote)
        return self.transport.request(call, "GET", f"{call.messages_path(folder)}?{query}").json().get("value", [])

    def _was_sent(self, call: Call, key: str) -> bool:
        """A submitted mail waits for its slot (in the Outbox as Outlook on the web shows it, or in Drafts as
        Graph's account of sendMail says, no longer a draft), then is in Sent Items."""
        return bool(self.find_by_key(key, call=call, folder="sentitems")
                    or self.find_by_key(key, call=call, folder="outbox")
                    or any(m.get("isDraft") is False for m in self.find_by_key(key, call=call, folder="drafts")))

    def was_sent(self, key: str, *, sender: str | None = None) -> bool | None:
        """Whether a mail with this idempotency key went out (or waits to); None when the app may not look and
        the connection's ``delivery_guarantee`` says to go on without knowing."""
        return self._sent_before(self.call(sender), key, retry=True)

    def _sent_before(self, call: Call, key: str, *, retry: bool) -> bool | None:
        """``_was_sent``, or, when Graph refuses the read (Mail.Send only): None where the connection accepts
        at least once (send again) or, on a retry, at most once (do not); else NoLookupError naming the fix."""
        try:
            return self._was_sent(call, key)
        except AccessDeniedError as err:
            guarantee = self.delivery_guarantee
            if guarantee == AT_LEAST_ONCE or (guarantee == AT_MOST_ONCE and retry):
                log.warning("Cannot look for %r in %s (%s %s); delivery_guarantee=%s: %s", key, call.mailbox,
                            err.status, err.code, guarantee, "sending it again, so it may arrive twice"
                            if guarantee == AT_LEAST_ONCE else "not sending it again, so it may be lost")
                return None
            raise NoLookupError(no_lookup_text(call.mailbox, key, err, retry)) from err

    def _is_draft(self, call: Call, message_id: str) -> bool | None:
        """Whether the message is still a draft; None when it is gone."""
        try:
            found = self.transport.request(call, "GET", call.message_path(message_id) + "?$select=id,isDraft").json()
        except (MalformedIdError, MailboxNotFoundError):
            raise  # a wrong id or mailbox says nothing about whether the draft went
        except ItemNotFoundError:
            return None
        return found.get("isDraft", True)

    def _draft_was_sent(self, call: Call, draft_id: str) -> bool:
        """A sent draft keeps its immutable id in Sent Items (isDraft false), or is gone (not saved)."""
        return self._is_draft(call, draft_id) is not True

    def get_message(self, message_id: str, *, sender: str | None = None, call: Call | None = None,
                    select: Sequence[str] = ()) -> dict:
        call = call or self.call(sender)
        query = _select_query(tuple(select)) if select else ""
        return self.transport.request(call, "GET", call.message_path(message_id) + query).json()

    # -- reading a mailbox -------------------------------------------------------------------------------

    def list_messages(self, *, sender: str | None = None, folder: str | None = None, filter: str | None = None,
                      select: Sequence[str] = (), order_by: str | None = None, page_size: int = 50,
                      expand: str | None = None) -> Iterator[dict]:
        """Every message matching ``filter`` (OData, as Graph takes it), page after page (``@odata.nextLink``);
        each page is one GET under the same retry and throttling rules as every other request. ``expand``:
        Graph's ``$expand`` (an extended property by id)."""
        call = self.call(sender)
        params = {"$top": str(page_size)}
        if filter:
            params["$filter"] = filter
        if select:
            params["$select"] = ",".join(select)
        if expand:
            params["$expand"] = expand
        if order_by:
            params["$orderby"] = order_by
        path: str | None = f"{call.messages_path(folder)}?{urlencode(params, quote_via=quote)}"
        while path:
            page = self.transport.request(call, "GET", path).json()
            yield from page.get("value", [])
            path = self._same_host_path(page.get("@odata.nextLink"))

    def _same_host_path(self, link: str | None) -> str | None:
        """A next link as a path under our base URL; a link elsewhere is refused (the token stays with Graph)."""
        if not link:
            return None
        base = self.transport.base_url
        if not link.startswith(base + "/"):
            raise GraphConfigError(f"Graph answered a next page link outside {base} ({link.split('?')[0]}); "
                                   "not following it with the token")
        return link[len(base):]

    def get_mime(self, message_id: str, *, sender: str | None = None) -> bytes:
        """The message's MIME (``$value``): what a non-delivery report says is in its report parts."""
        call = self.call(sender)
        return self.transport.request(call, "GET", call.message_path(message_id) + "/$value").content

    def folder_id(self, folder: str, *, sender: str | None = None, call: Call | None = None) -> str:
        """A well-known folder's id (``deleteditems``), to tell where a message now is from its parentFolderId."""
        call = call or self.call(sender)
        found = self.transport.request(call, "GET", f"{call.user_path}/mailFolders/{quote(folder, safe='')}"
                                       "?$select=id").json()
        if not isinstance(found, dict) or not isinstance(found.get("id"), str) or not found["id"]:
            raise UnexpectedAnswerError(f"Graph answered the folder {folder!r} without its id")
        return found["id"]


@lru_cache(maxsize=32)
def _select_query(select: tuple[str, ...]) -> str:
    """``?$select=a,b`` as Graph's documentation writes it, '$' and ',' unescaped: built once, and a shorter URL
    for requests and urllib3 to check at every request (a trigger's poll asks for the same fields each time)."""
    return "?" + urlencode({"$select": ",".join(select)}, quote_via=quote, safe="$,")


def no_lookup_text(mailbox: str, key: str, err: GraphRequestError, retry: bool) -> str:
    """Why exactly once failed for want of a read permission, and the three ways on."""
    why = ("this retry must look for what an earlier attempt sent" if retry else
           "the answer to the send was lost, and the client must look whether it went")
    return (f"message {key!r} from {mailbox}: {why}, and Graph refused to let the app read the mailbox ({err.status} "
            f"{err.code}: the app has Mail.Send but no read permission there). Exactly once across retries needs "
            "one: grant Mail.ReadWrite (or Mail.Read) as an application permission with admin consent (Exchange "
            "RBAC for Applications can scope it to this mailbox), or choose in the connection's extra "
            "delivery_guarantee: at_least_once (a retry sends again: a mail may arrive twice) or at_most_once (a "
            "retry does not: a mail may be lost). " + ("Nothing was sent" if retry else "It is not sent again"))
