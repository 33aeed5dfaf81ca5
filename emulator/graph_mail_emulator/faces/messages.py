"""Graph's message endpoints: sendMail, create (draft), update, send, get and list, as Microsoft documents them."""

from __future__ import annotations

from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend import mime as mime_io
from graph_mail_emulator.backend.limits import MAX_REQUEST_BYTES, message_size
from graph_mail_emulator.backend.rules import boolean, canonical_keys, message_from_json
from graph_mail_emulator.backend.store import FOLDER_NAMES, FOLDERS, IMMUTABLE_ID, Mailbox, property_key
from graph_mail_emulator.backend.text import preview
from graph_mail_emulator.errors import GraphError, bad_request
from graph_mail_emulator.faces import expand, listing, resource
from graph_mail_emulator.faces.access import Access
from graph_mail_emulator.faces.attachment_reads import expanded_attachments
from graph_mail_emulator.http.wire import Request, Response
from graph_mail_emulator.site import Site

# Updatable only while the message is a draft (Microsoft's "Update message" page); the rest also on mail
# that was sent or received (isRead, categories, flag, extended properties...).
_DRAFT_ONLY = {"subject", "body", "internetmessageid", "replyto"}


def merged_properties(stored: list[dict], given: list[dict]) -> list[dict]:
    """Extended properties after a PATCH: the given ones by id (any case or spacing), then the rest kept."""
    keys = {property_key(p["id"]) for p in given}
    return [*given, *(p for p in stored if isinstance(p, dict) and property_key(p.get("id", "")) not in keys)]


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
        message["bodyPreview"] = preview(message["body"])
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
        self.backend.delivery.send_new(mailbox, message, attachments, save, raw)
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
        payload = request.json()
        changes, attachments = message_from_json(payload, request.params["version"])
        if attachments:
            raise bad_request("ErrorInvalidParameter", "Attachments are added through the attachments collection.")
        given = {key.lower() for key in payload}  # message_from_json made sure it is an object
        if not message.get("isDraft") and given & _DRAFT_ONLY:
            raise bad_request("ErrorInvalidPropertyUpdateSentMessage", "Update operation is not allowed on a sent "
                              f"message for these properties: {', '.join(sorted(given & _DRAFT_ONLY))}.")
        for name in ("singleValueExtendedProperties", "multiValueExtendedProperties"):
            if name in changes:  # each given id created or updated; the message's others kept
                changes[name] = merged_properties(message.get(name) or [], changes[name])
        self.store.update(mailbox, message["id"], changes)
        return Response.json(200, self._render(request, mailbox, message["id"]))

    def send_draft(self, request: Request) -> Response:
        mailbox = self.access.mailbox(request, "Mail.Send")
        if request.body:
            raise bad_request("ErrorInvalidParameter", "The send action takes no request body.")
        self.backend.delivery.send_draft(mailbox, request.params["id"])
        return Response(202)

    def move_message(self, request: Request) -> Response:
        """move: to a folder by well-known name or id; the moved message (a new id) answers 201."""
        mailbox = self.access.mailbox(request, "Mail.ReadWrite")
        body = request.json()
        destination = body.get("destinationId") if isinstance(body, dict) else None
        if not isinstance(destination, str) or not destination:
            raise bad_request("ErrorInvalidParameter", "destinationId is required.")
        folder = self.store.resolve_folder(mailbox, destination)
        moved = self.store.move(mailbox, request.params["id"], folder)
        return Response.json(201, self._render(request, mailbox, moved))

    def get_mime(self, request: Request) -> Response:
        """$value: the message's MIME (as it arrived, or built from what is stored)."""
        mailbox = self.access.mailbox(request, ("Mail.ReadWrite", "Mail.Read"))
        message, _ = self.store.load(mailbox, request.params["id"])
        return Response(200, mime_io.stored_mime(self.store, message), {"Content-Type": "text/plain"})

    def get_folder(self, request: Request) -> Response:
        """A mail folder by well-known name or id: its id and counts."""
        mailbox = self.access.mailbox(request, ("Mail.ReadWrite", "Mail.Read"))
        folder = self.store.resolve_folder(mailbox, request.params["folder"])
        total = self.store.count(mailbox, [folder])
        context = f"{request.origin(self.site.base_url)}/{request.params['version']}/$metadata#users" \
                  f"('{self._user(request, mailbox)}')/mailFolders/$entity"
        return Response.json(200, {"@odata.context": context, "id": mailbox.folder_id(folder),
                                   "displayName": FOLDER_NAMES[folder], "parentFolderId": mailbox.folder_id("root"),
                                   "childFolderCount": 0, "unreadItemCount": self.store.unread(mailbox, folder),
                                   "totalItemCount": total, "isHidden": False})

    def get_message(self, request: Request) -> Response:
        mailbox = self.access.mailbox(request, ("Mail.ReadWrite", "Mail.Read"))
        return Response.json(200, self._render(request, mailbox, request.params["id"]))

    def list_messages(self, request: Request) -> Response:
        mailbox = self.access.mailbox(request, ("Mail.ReadWrite", "Mail.Read"))
        folder = request.params.get("folder")
        folders = [self.store.resolve_folder(mailbox, folder)] if folder else list(FOLDERS)
        query = listing.parse(request)
        if query.match is None and query.default_order:  # the common case, answered by the index alone
            total = self.store.count(mailbox, folders) if query.count or query.page else 0
            page = [self._full(m) for m in self.store.page(mailbox, folders, query.skip, query.page)]
        else:
            if query.property_lookup is not None:
                candidates = self.store.find_by_property(mailbox, folders, *query.property_lookup)
            else:
                candidates = self.store.page(mailbox, folders, 0, -1)
            names = self.store.attachment_names(mailbox) if query.match is not None else {}
            full = [self._full(m, names.get(m["id"], [])) for m in candidates]
            matched = [m for m in full if query.match is None or query.match(m)]
            if not query.default_order:
                matched = listing.sort(matched, query.order)
            total = len(matched)
            page = matched[query.skip:query.skip + query.page]
        origin = request.origin(self.site.base_url)
        collection = f"mailFolders('{folder}')/messages" if folder else "messages"
        body: dict = {"@odata.context": resource.context_url(origin, request.params["version"], self._user(request,
                      mailbox), collection, query.names, entity=False)}
        if query.count:
            body["@odata.count"] = total
        body["value"] = [self._shown(request, m, query.names, query.expand) for m in page]
        link = listing.next_link(request, origin, query, total)
        if link:
            body["@odata.nextLink"] = link
        headers = {"Preference-Applied": f"odata.maxpagesize={query.page_size_applied}"} \
            if query.page_size_applied else {}
        return Response.json(200, body, headers)

    def _user(self, request: Request, mailbox: Mailbox) -> str:
        return request.params.get("user") or mailbox.id

    def _full(self, message: dict, attachment_names=()) -> dict:
        """The stored message with every documented property (and, for $search, its attachments' names)."""
        full = resource.full(message, resource.web_link(self.site.base_url, message["id"]))
        full["_attachmentNames"] = list(attachment_names)
        return full

    def _shown(self, request: Request, full: dict, names: tuple[str, ...], expansion: expand.Expansion) -> dict:
        if "attachments" in expansion:
            full = {**full, "_attachments": expanded_attachments(self.store, full, expansion["attachments"])}
        shown_id = full[IMMUTABLE_ID] if request.immutable_ids and IMMUTABLE_ID in full else full["id"]
        return {**resource.project(full, names, shown_id), **expand.expanded(full, expansion)}

    def _render(self, request: Request, mailbox: Mailbox, message_id: str) -> dict:
        """One message, as create (201), get and update answer it (get with $select and $expand)."""
        message, _ = self.store.load(mailbox, message_id)
        names: tuple[str, ...] = resource.DEFAULT_PROPERTIES
        expansion: expand.Expansion = {}
        if request.method == "GET":
            options = request.system_options()
            names, expansion = resource.selected(options.get("$select")), expand.parse(options.get("$expand"))
        context = resource.context_url(request.origin(self.site.base_url), request.params["version"],
                                       self._user(request, mailbox), "messages", names, entity=True)
        return {"@odata.context": context, **self._shown(request, self._full(message), names, expansion)}
