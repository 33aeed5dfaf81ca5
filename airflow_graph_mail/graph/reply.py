"""Answer a received mail in its thread: reply, reply to all, or forward, with our own body and attachments
of any size, sent once.

The way: ``createReply`` / ``createReplyAll`` / ``createForward`` makes a draft in the thread (Graph keeps
the conversation, the subject's RE:/FW:, the recipients by RFC 5322's rules and the quoted original) tagged
with the idempotency key; our body goes in before the quoted original (one PATCH of the draft, so the
body is exactly ours: Graph's ``comment`` leaves its HTML handling undocumented); attachments are added as
for any draft (upload sessions from 3 MB); the draft is sent through the client's ``send_draft`` (after an
unclear answer the draft itself says whether it went; the allow-list checked on its final recipients).
A retry with ``check_first`` finds a reply already sent by its key, or replaces the draft an earlier try
left. No Airflow here.
"""

from __future__ import annotations

import html
import logging
import re

from airflow_graph_mail.errors import GraphConfigError, GraphMailError
from airflow_graph_mail.graph.submit import submit_once
from airflow_graph_mail.mail.idempotency import key_property
from airflow_graph_mail.mail.recipients import Recipient
from airflow_graph_mail.outcomes import Status

log = logging.getLogger(__name__)

ACTIONS = {"reply": "createReply", "reply_all": "createReplyAll", "forward": "createForward"}
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def as_html(text: str, body_type: str) -> str:
    """Our body as HTML: text is escaped, its line breaks kept."""
    if body_type == "html":
        return text
    return "<div>" + html.escape(text).replace("\r\n", "\n").replace("\n", "<br>\n") + "</div>"


def with_our_body(draft_body: dict, ours: str, body_type: str) -> dict:
    """The draft's body (Graph's quoted original) with ours in front of it, in the draft's own content type."""
    quoted = draft_body.get("content") if isinstance(draft_body, dict) else ""
    quoted = quoted if isinstance(quoted, str) else ""
    kind = str(draft_body.get("contentType", "html") if isinstance(draft_body, dict) else "html").lower()
    if kind == "text":
        text = ours if body_type == "text" else re.sub(r"<[^>]+>", "", ours)
        return {"contentType": "text", "content": text + "\r\n\r\n" + quoted}
    mine = as_html(ours, body_type)
    found = _BODY_TAG.search(quoted)
    content = quoted[:found.end()] + mine + quoted[found.end():] if found else mine + quoted
    return {"contentType": "html", "content": content}


def respond(client, message_id: str, *, action: str, body: str, body_type: str = "html",
            to: list[Recipient] | None = None, attachments=(), sender: str | None = None,
            idempotency_key: str | None = None, check_first: bool = False) -> Status:
    """Reply to, reply to all of, or forward message ``message_id`` in ``sender``'s mailbox, once per key."""
    if action not in ACTIONS:
        raise GraphConfigError(f"action: {action!r} is not one of {', '.join(ACTIONS)}")
    if action == "forward" and not to:
        raise GraphConfigError("to: a forward needs at least one recipient")
    if action != "forward" and to:
        raise GraphConfigError(f"to: a {action} goes to the mail's own sender (and recipients); give to only "
                               "with action='forward'")
    call = client.call(sender)
    key = idempotency_key
    if key and check_first:
        if any(client.find_by_key(key, call=call, folder=folder) for folder in ("sentitems", "outbox")):
            log.info("The %s keyed %r was sent by an earlier try; not again", action, key)
            return Status.ALREADY_SENT
        for left in client.find_by_key(key, call=call, folder="drafts"):
            if left.get("isDraft", True):
                log.info("Deleting the draft %s an earlier try of %r left", left["id"], key)
                client.delete_message(left["id"], sender=call.mailbox)
    message: dict = {}
    if key:
        message["singleValueExtendedProperties"] = [key_property(key)]
    if to:
        message["toRecipients"] = [r.to_graph() for r in to]
    path = f"{call.message_path(message_id)}/{ACTIONS[action]}"

    def create() -> dict:
        return client.transport.request(call, "POST", path, json_body={"message": message} if message else None,
                                        expect=(201,)).json()

    def lookup() -> dict | None:
        found = client.find_by_key(str(key), call=call, folder="drafts")
        return client.get_message(found[0]["id"], call=call) if found else None

    draft = submit_once(call, create, lookup if key else None, what=f"the {action} draft of {key!r}",
                        no_lookup_hint="not created again, since there could be two; give an idempotency key")
    try:
        client.transport.request(call, "PATCH", call.message_path(draft["id"]), idempotent=True,
                                 json_body={"body": with_our_body(draft.get("body") or {}, body, body_type)})
        before = client.attachment_count(draft["id"], call=call)
        for position, attachment in enumerate(attachments):
            client.add_attachment(draft["id"], attachment, call=call, position=before + position)
        client.send_draft(draft["id"], sender=call.mailbox)
    except GraphMailError as err:
        if err.permanent:  # definitely not sent: leave no draft behind
            _discard(client, call.mailbox, draft["id"])
        raise
    return Status.SENT


def _discard(client, mailbox: str, draft_id: str) -> None:
    try:
        client.delete_message(draft_id, sender=mailbox)
    except GraphMailError as err:
        log.warning("Could not delete the unfinished draft %s: %s", draft_id, err)
