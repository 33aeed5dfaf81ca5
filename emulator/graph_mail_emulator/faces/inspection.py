"""The inspection API: what arrived where, as JSON or .eml, the request log, a reviewer's hands, and reset.

Not part of Graph: it lets tests and people look at the mailboxes without a token, over HTTP
(``/_emulator/``) and in Python (``GraphEmulator.inspect``: ``emulator.inspect.messages(address)``...).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend.mime import stored_mime
from graph_mail_emulator.backend.queries import folder_counts
from graph_mail_emulator.backend.rules import message_from_json
from graph_mail_emulator.errors import GraphError, bad_request
from graph_mail_emulator.faces.resource import web_link
from graph_mail_emulator.http.wire import Request, Response
from graph_mail_emulator.site import Site


def attachment_json(att: dict, with_content: bool) -> dict:
    out = {k: v for k, v in att.items() if k != "content"}
    if with_content:
        out["contentBytes"] = base64.b64encode(att["content"]).decode("ascii")
    return out


class Inspection:
    """``request_log`` is the dispatcher's (every Graph, Entra and upload request, newest last); ``reset``
    empties the whole emulator (mailboxes, uploads, log)."""

    def __init__(self, backend: MailBackend, site: Site, request_log, reset: Callable[[], None]):
        self.backend = backend
        self.store = backend.store
        self.site = site
        self.request_log = request_log
        self._reset = reset

    # -- reads (also the Python API) -----------------------------------------------------------------

    def full_message(self, message_id: str, with_content: bool = False) -> dict | None:
        self.backend.delivery.drain()
        found = self.store.find_message(message_id)
        if found is None:
            return None
        mailbox, message, folder = found
        return self._inspected(mailbox.address, folder, message, with_content)

    def _inspected(self, address: str, folder: str, message: dict, with_content: bool) -> dict:
        """A stored message as the inspection API shows it: where it is, its link, its attachments."""
        attachments = self.store.attachments(message["id"], with_content=with_content)
        return {**message, "mailbox": address, "folder": folder,
                "webLink": web_link(self.site.base_url, message["id"]),
                "attachments": [attachment_json(a, with_content) for a in attachments]}

    def messages(self, address: str, folder: str = "inbox", with_content: bool = True) -> list[dict]:
        self.backend.delivery.drain()
        mailbox = self.store.find_mailbox(address)
        if mailbox is None:
            return []
        return [self._inspected(mailbox.address, folder, m, with_content)
                for m in self.store.list_folder(mailbox, folder)]

    def attachment_bytes(self, message_id: str) -> dict[str, bytes]:
        found = self.store.find_message(message_id)
        attachments = self.store.attachments(found[1]["id"], with_content=True) if found else []
        return {a["name"]: a["content"] for a in attachments}

    def eml(self, message_id: str) -> bytes | None:
        """The original MIME when the message arrived as MIME, else one built from what was stored."""
        found = self.store.find_message(message_id)
        return stored_mime(self.store, found[1]) if found is not None else None

    def export_eml(self, address: str, directory: str | Path, folder: str = "inbox") -> list[Path]:
        """Write a folder's messages as .eml files; their (absolute) paths, oldest first."""
        directory = Path(directory).absolute()
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, message in enumerate(reversed(self.messages(address, folder, with_content=False)), 1):
            path = directory / f"{index:04d}-{message['id'][-12:]}.eml"
            path.write_bytes(self.eml(message["id"]) or b"")
            paths.append(path)
        return paths

    def folder_counts(self) -> dict[str, dict[str, int]]:
        """{mailbox id: {folder: messages}} for every mailbox."""
        self.backend.delivery.drain()
        return folder_counts(self.store)

    def deliveries(self, property_id: str) -> dict[str, int]:
        """Submissions (sendMail, or a draft sent) per value of a single-value extended property, such as
        an idempotency key: a value counted twice is a duplicate mail."""
        return self.store.submissions(property_id)

    def budget(self, address: str) -> dict:
        """A mailbox's sending budget as Exchange's transport sees it now: recipients it sent in the last 24
        hours (``recipientsUsed`` of ``recipientLimit``, ``windowFreesAt``), what waits in its Outbox
        (``queued``, ``queuedRecipients``, ``nextLeavesAt``, ``lastLeavesAt``), and the tenant's external
        recipients (``externalUsed`` of ``externalLimit``, TERRL)."""
        self.backend.delivery.drain()
        return self.backend.delivery.budget(self._mailbox(address))

    def outbox(self, address: str) -> list[dict]:
        """The mail waiting in a mailbox's Outbox, in the order it leaves: {id, subject, leavesAt, recipients}."""
        self.backend.delivery.drain()
        return self.backend.delivery.queued(self._mailbox(address))

    def _mailbox(self, address: str):
        mailbox = self.store.find_mailbox(address)
        if mailbox is None:
            raise GraphError(404, "ErrorItemNotFound", "No such mailbox.")
        return mailbox

    @property
    def side_effect_requests(self) -> list[dict]:
        """Logged Graph calls that could change a mailbox (any non-GET), for 'nothing was sent' checks."""
        return [r for r in self.request_log if r["method"] != "GET" and "/oauth2/" not in r["path"]]

    # -- the HTTP face -------------------------------------------------------------------------------

    def inspect_mailboxes(self, request: Request) -> Response:
        counts = self.folder_counts()
        return Response.json(200, {"value": [
            {"id": m.id, "address": m.address, "displayName": m.display_name, "isUser": m.is_user,
             "folders": counts.get(m.id, {})} for m in self.store.mailboxes()]})

    def inspect_folder(self, request: Request) -> Response:
        mailbox = self.store.find_mailbox(request.params["mailbox"])
        if mailbox is None:
            raise GraphError(404, "ErrorItemNotFound", "No such mailbox.")
        folder = self.store.resolve_folder(mailbox, request.params["folder"])
        return Response.json(200, {"value": self.messages(mailbox.address, folder,
                                                          request.query.get("content") == "true")})

    def inspect_message(self, request: Request) -> Response:
        found = self.full_message(request.params["id"], request.query.get("content") == "true")
        if found is None:
            raise GraphError(404, "ErrorItemNotFound", "No such message.")
        return Response.json(200, found)

    def inspect_eml(self, request: Request) -> Response:
        eml = self.eml(request.params["id"])
        if eml is None:
            raise GraphError(404, "ErrorItemNotFound", "No such message.")
        return Response(200, eml, {"Content-Type": "message/rfc822",
                                   "Content-Disposition": f'attachment; filename="{request.params["id"]}.eml"'})

    def inspect_budget(self, request: Request) -> Response:
        return Response.json(200, {**self.budget(request.params["mailbox"]),
                                   "outbox": self.outbox(request.params["mailbox"])})

    def inspect_clock(self, request: Request) -> Response:
        clock = self.backend.clock
        return Response.json(200, {"now": clock.iso(), "offsetSeconds": clock.offset})

    def move_clock(self, request: Request) -> Response:
        """``{"advance": seconds}``: the backend's clock moves forward; what became due has happened."""
        body = request.json()
        seconds = body.get("advance") if isinstance(body, dict) else None
        try:
            self.backend.clock.advance(seconds)  # type: ignore[arg-type]  # advance() checks what came
        except ValueError as err:
            raise bad_request("BadRequest", f'Give {{"advance": seconds}}: {err}') from None
        return self.inspect_clock(request)

    def inspect_deliveries(self, request: Request) -> Response:
        if not request.query.get("property"):
            raise bad_request("BadRequest", "Give ?property=<extended property id>.")
        return Response.json(200, {"value": self.deliveries(request.query["property"])})

    # -- a reviewer's hands: send or discard a draft, as a person would in Outlook -------------------

    def _draft(self, message_id: str):
        found = self.store.find_message(message_id)
        if found is None:
            raise GraphError(404, "ErrorItemNotFound", "No such message.")
        if not found[1].get("isDraft") or found[2] == "deleteditems":
            raise GraphError(400, "ErrorInvalidOperation", "Only a draft can be sent or discarded.")
        return found[0], found[1]

    def send_as_reviewer(self, message_id: str, changes: dict | None = None) -> None:
        """Send a draft (by id or immutable id); ``changes`` (Graph's message properties: recipients,
        subject, body) edit it first, as a reviewer may."""
        mailbox, draft = self._draft(message_id)
        if changes:
            edited, attachments = message_from_json(changes, "v1.0")
            if attachments:
                raise bad_request("ErrorInvalidParameter", "Attachments cannot be changed here.")
            self.store.update(mailbox, draft["id"], edited)
        self.backend.delivery.send_draft(mailbox, draft["id"])

    def discard_as_reviewer(self, message_id: str, hard: bool = False) -> None:
        """Discard a draft as Outlook does (to Deleted Items), or delete it outright."""
        mailbox, draft = self._draft(message_id)
        if hard:
            self.store.delete(mailbox, draft["id"])
        else:
            self.store.move(mailbox, draft["id"], "deleteditems")

    def review_send(self, request: Request) -> Response:
        self.send_as_reviewer(request.params["id"], request.json() if request.body else None)
        return Response(202)

    def review_discard(self, request: Request) -> Response:
        self.discard_as_reviewer(request.params["id"], hard=request.query.get("hard") == "true")
        return Response(204)

    def inspect_requests(self, request: Request) -> Response:
        return Response.json(200, {"value": list(self.request_log)})

    def reset(self, request: Request) -> Response:
        self._reset()
        return Response(204)

    def web_link(self, request: Request) -> Response:
        """A draft's webLink (Outlook on the web's form) opens it in the viewer."""
        item = request.query.get("ItemID", "")
        return Response(302, b"", {"Location": f"/_viewer/messages/{quote(item, safe='')}"})
