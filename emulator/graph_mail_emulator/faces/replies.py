"""Answering a message, as Microsoft's message pages describe it: ``createReply``, ``createReplyAll`` and
``createForward`` make a draft (201) to edit, attach to and send; ``reply``, ``replyAll`` and ``forward`` send
at once (202, a copy in Sent Items, delivery as for any sent mail).

The draft: the subject with ``RE: `` or ``FW: `` (once); a reply to the original's ``replyTo`` if it has
one, else to its sender (RFC 2822, as the pages say); reply-all adds the other recipients but the mailbox
itself; a forward goes to the ``toRecipients`` given and carries the original's attachments. The same
``conversationId``, and ``In-Reply-To``/``References`` when sent. The body is HTML: the ``comment`` (as HTML)
or ``message.body``, then Outlook's header block (From, Sent, To, Cc, Subject) and the original's body;
Graph does not document that block's exact markup, so this one is the emulator's. ``comment`` and
``message.body`` together, or a forward's ``toRecipients`` given twice, are 400. A JSON ``message`` takes any
writable property (recipients, attachments...); a ``text/plain`` body is base64 MIME instead.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend import mime as mime_io
from graph_mail_emulator.backend.limits import MAX_REQUEST_BYTES
from graph_mail_emulator.backend.rules import message_from_json, recipient
from graph_mail_emulator.backend.store import IMMUTABLE_ID, Mailbox
from graph_mail_emulator.backend.text import preview
from graph_mail_emulator.errors import GraphError, bad_request
from graph_mail_emulator.faces import resource
from graph_mail_emulator.faces.access import Access
from graph_mail_emulator.http.wire import Request, Response
from graph_mail_emulator.site import Site

_PREFIX = {"reply": "RE: ", "replyall": "RE: ", "forward": "FW: "}
_ALREADY = {"RE: ": re.compile(r"^\s*re\s*:", re.IGNORECASE), "FW: ": re.compile(r"^\s*(fw|fwd)\s*:", re.IGNORECASE)}
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.IGNORECASE | re.DOTALL)


class ReplyResponses:
    def __init__(self, backend: MailBackend, access: Access, site: Site):
        self.backend = backend
        self.store = backend.store
        self.access = access
        self.site = site

    def create_reply(self, request: Request) -> Response:
        """createReply, createReplyAll, createForward: the draft, 201."""
        mailbox = self.access.mailbox(request, "Mail.ReadWrite")
        action = request.params["action"].lower().removeprefix("create")
        draft_id = self._draft(request, mailbox, action, sending=False)
        return Response.json(201, self._render(request, mailbox, draft_id))

    def reply(self, request: Request) -> Response:
        """reply, replyAll, forward: the draft made and sent in one step, 202 and no body."""
        mailbox = self.access.mailbox(request, "Mail.Send")
        action = request.params["action"].lower()
        with self.store.transaction():  # a draft that cannot be sent is not left behind
            draft_id = self._draft(request, mailbox, action, sending=True)
            self.backend.delivery.send_draft(mailbox, draft_id)
        return Response(202)

    # -- the draft ----------------------------------------------------------------------------------------

    def _draft(self, request: Request, mailbox: Mailbox, action: str, sending: bool) -> str:
        if request.oversize or len(request.body) > MAX_REQUEST_BYTES:
            raise GraphError(413, "RequestEntityTooLarge", "The maximum request length supported is 4MB.")
        original, _ = self.store.load(mailbox, request.params["id"])
        comment, changes, attachments, to_given = self._request(request, action, sending)
        draft: dict[str, Any] = {"subject": _prefixed(original.get("subject") or "", _PREFIX[action]),
                 "toRecipients": _recipients(original, mailbox, action), "ccRecipients": [], "bccRecipients": [],
                 "importance": "normal",
                 "_inReplyTo": [*original.get("_inReplyTo", []), original.get("internetMessageId", "")][-20:]}
        if action == "replyall":
            draft["ccRecipients"] = [r for r in original.get("ccRecipients") or [] if not _is(r, mailbox)]
        if to_given is not None:
            draft["toRecipients"] = to_given
        given_body = changes.pop("body", None)
        draft.update(changes)
        draft["body"] = {"contentType": "html", "content": _quoted(original, comment, given_body)}
        draft["bodyPreview"] = preview(draft["body"])
        draft["_inReplyTo"] = [r for r in draft["_inReplyTo"] if r]
        forwarded = original["id"] if action == "forward" else None
        draft["hasAttachments"] = bool(forwarded and original.get("hasAttachments")) or \
            any(not a["isInline"] for a in attachments)
        return self.store.create_draft(mailbox, "drafts", draft, attachments,
                                       conversation_id=original.get("conversationId"),
                                       copy_attachments_of=forwarded)

    def _request(self, request: Request, action: str, sending: bool):
        """(comment, message changes, attachments, a forward's recipients) from a JSON or MIME body."""
        if request.is_mime:
            changes, attachments = mime_io.message_from_mime(mime_io.decode_body(request.body))
            changes = {k: v for k, v in changes.items() if v not in ([], "", None) and k != "from"}
            return "", changes, attachments, None
        payload = request.json() if request.body else {}
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise bad_request("ErrorInvalidParameter", "The request body must be a JSON object.")
        given = {key.lower(): value for key, value in payload.items()}
        unknown = set(given) - {"comment", "message", "torecipients"}
        if unknown or ("torecipients" in given and action != "forward"):
            name = sorted(unknown or {"toRecipients"})[0]
            raise bad_request("RequestBodyRead", f"The parameter '{name}' in the request payload is not a valid "
                              f"parameter for the operation '{request.params['action']}'.")
        comment = given.get("comment", "")
        if comment is None:
            comment = ""
        if not isinstance(comment, str):
            raise bad_request("RequestBodyRead", "'comment' must be a string.")
        changes, attachments = ({}, []) if given.get("message") is None else \
            message_from_json(given["message"], request.params["version"])
        if comment and "body" in changes:
            raise bad_request("ErrorInvalidParameter", "Specify either a comment or the body of the message, not both.")
        to_given = None
        if action == "forward":
            top = given.get("torecipients")
            if top is not None and "toRecipients" in changes:
                raise bad_request("ErrorInvalidParameter", "Specify the forward's toRecipients either as a parameter "
                                  "or in the message, not both.")
            if top is not None:
                if not isinstance(top, list):
                    raise bad_request("RequestBodyRead", "'toRecipients' must be a collection of recipients.")
                to_given = [recipient(r) for r in top]
            elif "toRecipients" in changes:
                to_given = changes.pop("toRecipients")
            if sending and not to_given:
                raise bad_request("ErrorInvalidRecipients", "A forward needs toRecipients, as a parameter or in "
                                  "the message.")
        return comment, changes, attachments, to_given

    def _render(self, request: Request, mailbox: Mailbox, message_id: str) -> dict:
        message, _ = self.store.load(mailbox, message_id)
        full = resource.full(message, resource.web_link(self.site.base_url, message["id"]))
        shown_id = full[IMMUTABLE_ID] if request.immutable_ids else full["id"]
        context = resource.context_url(request.origin(self.site.base_url), request.params["version"],
                                       request.params.get("user") or mailbox.id, "messages",
                                       resource.DEFAULT_PROPERTIES, entity=True)
        return {"@odata.context": context, **resource.project(full, resource.DEFAULT_PROPERTIES, shown_id)}


def _prefixed(subject: str, prefix: str) -> str:
    return subject if _ALREADY[prefix].match(subject) else prefix + subject


def _is(person: dict, mailbox: Mailbox) -> bool:
    return str((person.get("emailAddress") or {}).get("address", "")).lower() == mailbox.address.lower()


def _recipients(original: dict, mailbox: Mailbox, action: str) -> list[dict]:
    """Whom a reply goes to: the original's Reply-To, else its sender; reply-all adds its To but the mailbox."""
    if action == "forward":
        return []
    first = list(original.get("replyTo") or []) or [original.get("from") or original.get("sender")]
    people = [p for p in first if p]
    if action == "replyall":
        people += [r for r in original.get("toRecipients") or [] if not _is(r, mailbox)]
    seen, out = set(), []
    for person in people:
        address = str((person.get("emailAddress") or {}).get("address", "")).lower()
        if address and address not in seen:
            seen.add(address)
            out.append(person)
    return out


def _quoted(original: dict, comment: str, given_body: dict | None) -> str:
    """The answer's HTML: the comment (or the given body), Outlook's header block, the original's body."""
    if given_body is not None:
        top = given_body["content"] if given_body["contentType"] == "html" else _as_html(given_body["content"])
    else:
        top = comment

    def people(name: str) -> str:
        value = original.get(name)
        return "; ".join(_person(p) for p in (value if isinstance(value, list) else [value]) if p)

    sent = original.get("sentDateTime") or original.get("createdDateTime") or ""
    try:
        sent = dt.datetime.fromisoformat(sent.replace("Z", "+00:00")).strftime("%A, %B %d, %Y %I:%M %p")
    except ValueError:
        pass
    lines = [("From", people("from")), ("Sent", html.escape(sent)), ("To", people("toRecipients"))]
    if original.get("ccRecipients"):
        lines.append(("Cc", people("ccRecipients")))
    lines.append(("Subject", html.escape(original.get("subject") or "")))
    block = "<br>\r\n".join(f"<b>{label}:</b> {value}" for label, value in lines)
    body = original.get("body") or {"contentType": "text", "content": ""}
    if body.get("contentType") == "html":
        inner = _BODY.search(body.get("content") or "")
        quoted = inner.group(1) if inner else body.get("content") or ""
    else:
        quoted = _as_html(body.get("content") or "")
    return (f'<html><head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n</head>\r\n'
            f'<body>\r\n<div>{top}</div>\r\n<hr style="display:inline-block;width:98%" tabindex="-1">\r\n'
            f'<div id="divRplyFwdMsg" dir="ltr">{block}</div>\r\n<div>{quoted}</div>\r\n</body>\r\n</html>')


def _person(person: dict) -> str:
    email = person.get("emailAddress") or {}
    name, address = str(email.get("name") or ""), str(email.get("address") or "")
    return html.escape(f"{name} <{address}>" if name and name != address else address)


def _as_html(text: str) -> str:
    return html.escape(text).replace("\r\n", "\n").replace("\n", "<br>\r\n")
