"""The mailbox viewer: server-rendered pages at the emulator's root, to look at what a DAG sent.

Pages are Jinja templates; the only script is static/viewer.js (tabs, local times, a live list).
Message bodies are served separately, under a policy that blocks scripts and anything remote.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2

from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend.inbound import InboundError
from graph_mail_emulator.backend.limits import message_size
from graph_mail_emulator.backend.mime import media_type
from graph_mail_emulator.backend.queries import (
    attachment_content,
    browse,
    browse_sends,
    folder_counts,
    report_messages,
    reported_messages,
)
from graph_mail_emulator.backend.store import FOLDER_NAMES, FOLDERS, IMMUTABLE_ID, Mailbox
from graph_mail_emulator.errors import GraphError
from graph_mail_emulator.faces.viewer.body import framed_document, remote_references, text_body
from graph_mail_emulator.faces.viewer.form import read_form
from graph_mail_emulator.http.wire import Request, Response

HERE = Path(__file__).parent
USER_FOLDERS = ("inbox", "drafts", "sentitems", "deleteditems")
FLAG_LABELS = {"notFlagged": "not flagged", "flagged": "flagged", "complete": "complete"}
STATIC = {"viewer.css": "text/css; charset=utf-8", "viewer.js": "text/javascript; charset=utf-8"}
PAGE_LIMIT = 200
RAW_PREVIEW_BYTES = 256 * 1024
IDEMPOTENCY_PROPERTY = "name airflowgraphmailidempotencykey"  # the suffix of the id our client tags mail with
_PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                "form-action 'self'; frame-ancestors 'none'")
# What a mail may do in the frame: show its own HTML, inline CSS and its cid: images; no script, nothing remote.
_BODY_POLICY = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; font-src 'self' data:; "
                "form-action 'none'; frame-ancestors 'self'; "
                "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox")
_CONTENT_POLICY = "default-src 'none'; sandbox"
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size:,} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:,.1f} KB"
    return f"{size / 1024 / 1024:,.1f} MB"


def address_label(recipient: dict | None) -> str:
    email = (recipient or {}).get("emailAddress") or {}
    name, address = email.get("name") or "", email.get("address") or ""
    return f"{name} <{address}>" if name and name != address else address


def message_time(message: dict) -> str:
    return message.get("receivedDateTime") or message.get("sentDateTime") or message.get("createdDateTime") or ""


def time_text(stamp: str) -> str:
    """UTC as text; viewer.js shows it in the reader's own time zone."""
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return stamp


def _html(status: int, body: str, headers: dict | None = None) -> Response:
    # same-origin, not no-referrer: with no referrer a browser sends "Origin: null" with the page's own forms.
    return Response(status, body.encode("utf-8"), {"Content-Type": "text/html; charset=utf-8",
                                                   "Content-Security-Policy": _PAGE_POLICY, **_NO_STORE,
                                                   "Referrer-Policy": "same-origin", **(headers or {})})


def _download_name(name: str) -> str:
    """Content-Disposition with an ASCII fallback and the exact (UTF-8) name for browsers that read it."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name) or "attachment"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class Viewer:
    """``eml(message_id)`` gives a message's MIME source (the inspection API's)."""

    def __init__(self, backend: MailBackend, tenant_domain: str, eml: Callable[[str], bytes | None]):
        self.backend = backend
        self.tenant_domain = tenant_domain
        self.eml = eml
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                      trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        self.env.filters["size"] = human_size
        self.env.filters["when"] = time_text

    @property
    def store(self):
        return self.backend.store

    def _page(self, template: str, status: int = 200, **values) -> Response:
        values.setdefault("q", "")
        values.setdefault("selected", {"mailbox": None, "folder": None})
        values.update(tenant=self.tenant_domain, sidebar=self._sidebar(values["selected"]))
        return _html(status, self.env.get_template(template).render(**values))

    def _missing(self, what: str) -> Response:
        return self._page("missing.html", 404, what=what)

    def _sidebar(self, selected: dict) -> dict:
        boxes, total, all_counts = [], 0, folder_counts(self.store)
        for mailbox in self.store.mailboxes():
            counts = all_counts.get(mailbox.id, {})
            shown = [f for f in FOLDERS if counts.get(f) or (mailbox.is_user and f in USER_FOLDERS)] or ["inbox"]
            folders = [{"label": FOLDER_NAMES[f], "count": counts.get(f, 0),
                        "url": "/?" + urlencode({"mailbox": mailbox.address, "folder": f}),
                        "active": selected["mailbox"] == mailbox.address and selected["folder"] == f}
                       for f in shown]
            boxes.append({"address": mailbox.address, "name": mailbox.display_name,
                          "total": sum(counts.values()), "folders": folders,
                          "url": "/?" + urlencode({"mailbox": mailbox.address}),
                          "active": selected["mailbox"] == mailbox.address and not selected["folder"]})
            total += sum(counts.values())
        return {"mailboxes": boxes, "total": total, "all_active": not selected["mailbox"]}

    # -- pages ---------------------------------------------------------------------------------------

    def viewer_index(self, request: Request) -> Response:
        """Mailboxes and folders, and the newest messages of the one chosen (all of them by default)."""
        address, folder = request.query.get("mailbox"), request.query.get("folder")
        query = (request.query.get("q") or "").strip()
        mailbox, notice = None, ""
        if address:
            mailbox = self.store.find_mailbox(address)
            if mailbox is None:
                notice = f"There is no mailbox {address} (any more): showing all mailboxes."
        if mailbox is not None and folder:
            try:
                folder = self.store.resolve_folder(mailbox, folder)
            except GraphError:
                notice, folder = f"There is no folder {folder!r}: showing every folder of {mailbox.address}.", None
        folder = folder if mailbox is not None else None
        if mailbox is None:  # every mailbox: one row per message, its copies inside
            groups, total = browse_sends(self.store, query, PAGE_LIMIT)
            rows = [self._row(group[0], group) for group in groups]
        else:
            found, total = browse(self.store, mailbox, folder, query, PAGE_LIMIT)
            rows = [self._row(m) for m in found]
        selected = {"mailbox": mailbox.address if mailbox else None, "folder": folder}
        heading = "All mailboxes" if mailbox is None else mailbox.address
        if folder:
            heading += " · " + FOLDER_NAMES[folder]
        budget = self.backend.delivery.budget(mailbox) if mailbox is not None and mailbox.is_user else None
        return self._page("index.html", selected=selected, q=query, heading=heading, notice=notice, total=total,
                          budget=budget,
                          rows=rows, copies=sum(len(r["copies"]) for r in rows),
                          all_mailboxes=mailbox is None, version=self.store.version,
                          compose_url=f"/_viewer/mailboxes/{quote(mailbox.address, safe='@')}/receive"
                          if mailbox is not None and mailbox.is_user else "",
                          clear_url=f"/_viewer/mailboxes/{quote(mailbox.address, safe='@')}/clear" if mailbox else "")

    def _row(self, message: dict, copies: list[dict] | None = None) -> dict:
        """A list row: the message (the sender's copy when there is one), and where each copy of it is."""
        recipients = [address_label(r) for field in ("toRecipients", "ccRecipients", "bccRecipients")
                      for r in message.get(field) or []]
        return {"id": message["id"], "url": f"/_viewer/messages/{quote(message['id'], safe='')}",
                "time": message_time(message), "from": address_label(message.get("from") or message.get("sender")),
                "to": ", ".join(recipients), "subject": message.get("subject") or "",
                "size": message_size(message, message["_attachedBytes"] or 0), "attached": message["_attached"] or 0,
                "inline": message["_inline"] or 0, "draft": bool(message.get("isDraft")),
                "unread": any(m.get("isRead") is False for m in copies or [message]),
                "importance": message.get("importance", "normal"),
                "flagged": (message.get("flag") or {}).get("flagStatus") == "flagged",
                "copies": [{"label": m["_mailbox"] if m["_folder"] == "inbox" else
                            f"{m['_mailbox']} · {FOLDER_NAMES.get(m['_folder'], m['_folder'])}",
                            "where": f"{m['_mailbox']} · {FOLDER_NAMES.get(m['_folder'], m['_folder'])}",
                            "url": f"/_viewer/messages/{quote(m['id'], safe='')}", "unread": m.get("isRead") is False}
                           for m in copies or []]}

    def viewer_message(self, request: Request) -> Response:
        """One message: envelope, attachments, and tabs for the HTML, the text, the headers and the source."""
        found = self.store.find_message(request.params["id"])
        if found is None:
            return self._missing("message")
        mailbox, message, folder = found
        base = f"/_viewer/messages/{quote(message['id'], safe='')}"
        attachments = [{**a, "url": f"{base}/attachments/{quote(a['id'], safe='')}"}
                       for a in self.store.attachments(message["id"])]
        attached_bytes = sum(a["size"] for a in attachments)
        body = message.get("body") or {"contentType": "text", "content": ""}
        text, text_source = text_body(body, self.store.raw_mime(message["id"]))
        raw = ""
        if attached_bytes + len(body.get("content") or "") <= RAW_PREVIEW_BYTES:
            raw = (self.eml(message["id"]) or b"").decode("utf-8", "replace")
        recipients = [(label, ", ".join(address_label(r) for r in message.get(field) or []))
                      for label, field in (("To", "toRecipients"), ("Cc", "ccRecipients"), ("Bcc", "bccRecipients"),
                                           ("Reply-To", "replyTo"))]
        properties = [(p.get("id", ""), str(p.get("value", "")),
                       p.get("id", "").lower().endswith(IDEMPOTENCY_PROPERTY))
                      for p in message.get("singleValueExtendedProperties") or []]
        facts = [("Internet message id", message.get("internetMessageId")),
                 ("Conversation id", message.get("conversationId")),
                 ("Created", message.get("createdDateTime")), ("Sent", message.get("sentDateTime")),
                 ("Received", message.get("receivedDateTime")), ("Read", message.get("isRead")),
                 ("Draft", message.get("isDraft")), ("Categories", ", ".join(message.get("categories") or []))]
        return self._page(
            "message.html", selected={"mailbox": mailbox.address, "folder": folder},
            draft=bool(message.get("isDraft")) and folder != "deleteditems",
            send_url=f"{base}/send", discard_url=f"{base}/discard",
            reports=[self._link(m) for m in report_messages(self.store, mailbox, message)],
            report_of=[self._link(m) for m in reported_messages(self.store, mailbox, message)],
            subject=message.get("subject") or "", folder_label=FOLDER_NAMES[folder],
            mailbox=mailbox.address, sender=address_label(message.get("from") or message.get("sender")),
            on_behalf=address_label(message.get("sender")) if message.get("sender") != message.get("from") else "",
            recipients=[(label, value) for label, value in recipients if value], time=message_time(message),
            importance=message.get("importance", "normal"),
            flag=FLAG_LABELS.get(str((message.get("flag") or {}).get("flagStatus")), "not flagged"),
            size=message_size(message, attached_bytes), attachments=attachments,
            headers=message.get("internetMessageHeaders") or [], properties=properties,
            facts=[(k, v) for k, v in facts if v not in (None, "")], html=body.get("contentType") == "html",
            remote=remote_references(body), text=text, text_source=text_source, raw=raw,
            body_url=f"{base}/body", source_url=f"{base}/source",
            eml_url=f"/_emulator/messages/{quote(message['id'], safe='')}.eml",
            back_url="/?" + urlencode({"mailbox": mailbox.address, "folder": folder}))

    @staticmethod
    def _link(message: dict) -> dict:
        return {"url": f"/_viewer/messages/{quote(message['id'], safe='')}", "subject": message.get("subject") or
                "(no subject)", "time": message_time(message)}

    # -- what the message page loads ----------------------------------------------------------------

    def viewer_body(self, request: Request) -> Response:
        found = self.store.find_message(request.params["id"])
        if found is None:
            return self._missing("message")
        message = found[1]
        cid_base = f"/_viewer/messages/{quote(message['id'], safe='')}/cid/"
        document = framed_document(message.get("body") or {}, cid_base)
        return Response(200, document.encode("utf-8"), {
            "Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": _BODY_POLICY,
            "X-DNS-Prefetch-Control": "off", **_NO_STORE})

    def viewer_inline(self, request: Request) -> Response:
        """A ``cid:`` reference of the body: the attachment with that Content-ID, shown in place."""
        found = self.store.find_message(request.params["id"])
        cid = request.params["cid"]
        part = None
        if found is not None:
            part = (attachment_content(self.store, found[1]["id"], content_id=cid)
                    or attachment_content(self.store, found[1]["id"], content_id=cid.strip("<>")))
        if part is None:
            return Response(404, b"", {"Content-Type": "text/plain", **_NO_STORE})
        meta, content = part
        maintype, subtype = media_type(meta["contentType"])  # never the stored text itself in a header
        kind = f"image/{subtype}" if maintype == "image" else "application/octet-stream"
        return Response(200, content, {"Content-Type": kind, "Content-Disposition": "inline",
                                       "Content-Security-Policy": _CONTENT_POLICY, **_NO_STORE})

    def viewer_attachment(self, request: Request) -> Response:
        """An attachment exactly as stored, always as a download."""
        found = self.store.find_message(request.params["id"])
        part = attachment_content(self.store, found[1]["id"], request.params["attachment"]) if found else None
        if part is None:
            return self._missing("attachment")
        meta, content = part
        return Response(200, content, {"Content-Type": "/".join(media_type(meta["contentType"])),
                                       "Content-Disposition": _download_name(meta["name"]),
                                       "Content-Security-Policy": _CONTENT_POLICY, **_NO_STORE})

    def viewer_source(self, request: Request) -> Response:
        """The message's .eml as text in the browser (the download is /_emulator/messages/{id}.eml)."""
        eml = self.eml(request.params["id"])
        if eml is None:
            return self._missing("message")
        return Response(200, eml, {"Content-Type": "text/plain; charset=utf-8",
                                   "Content-Security-Policy": _CONTENT_POLICY, **_NO_STORE})

    def viewer_static(self, request: Request) -> Response:
        name = request.params["asset"]
        if name not in STATIC:
            return Response(404, b"", {"Content-Type": "text/plain"})
        return Response(200, (HERE / "static" / name).read_bytes(), {"Content-Type": STATIC[name],
                                                                     "Cache-Control": "no-cache"})

    def viewer_version(self, request: Request) -> Response:
        """A number that changes whenever any mailbox does: the list page polls it to refresh itself."""
        return Response.json(200, {"version": self.store.version}, {"Cache-Control": "no-store"})

    # -- changes -------------------------------------------------------------------------------------

    @staticmethod
    def cross_site_refused() -> Response:
        return _html(403, "<p>Changes are allowed only from the viewer's own page.</p>")

    def viewer_send(self, request: Request) -> Response:
        """The reviewer's Send on a draft: sent as Outlook sends it, then its Sent Items copy is shown."""
        found = self.store.find_message(request.params["id"])
        if found is None or not found[1].get("isDraft"):
            return self._missing("draft")
        mailbox, draft, _ = found
        immutable = draft.get(IMMUTABLE_ID, "")
        self.backend.delivery.send_draft(mailbox, draft["id"])
        sent = self.store.find_message(immutable) if immutable else None
        location = f"/_viewer/messages/{quote(sent[1]['id'], safe='')}" if sent else \
            "/?" + urlencode({"mailbox": mailbox.address, "folder": "sentitems"})
        return Response(303, b"", {"Location": location})

    def viewer_discard(self, request: Request) -> Response:
        """The reviewer's Discard on a draft: to Deleted Items, as Outlook does."""
        found = self.store.find_message(request.params["id"])
        if found is None or not found[1].get("isDraft"):
            return self._missing("draft")
        mailbox, draft, _ = found
        moved = self.store.move(mailbox, draft["id"], "deleteditems")
        return Response(303, b"", {"Location": f"/_viewer/messages/{quote(moved, safe='')}"})

    def viewer_receive(self, request: Request) -> Response:
        """The "send a mail to this mailbox" form: a mail from outside, as ``emulator.inbound.receive`` makes
        it; then its page. Only from the viewer's own page (the emulator refuses cross-site changes)."""
        mailbox = self.store.find_mailbox(request.params["mailbox"])
        if mailbox is None or not mailbox.is_user:
            return self._missing("mailbox")
        form = read_form(request)
        try:
            arrived = self.backend.inbound.receive(
                to=mailbox.address, sender=form.fields.get("from", ""), subject=form.fields.get("subject", ""),
                body=form.fields.get("body", ""), body_type=form.fields.get("bodyType", "text"),
                authentication=form.fields.get("authentication", "pass"), folder=form.fields.get("folder", "inbox"),
                attachments=[{"name": name, "content": content, "contentType": kind}
                             for name, kind, content in form.files])
        except InboundError as err:
            return self._page("refused.html", 400, reason=str(err),
                              back_url="/?" + urlencode({"mailbox": mailbox.address}))
        return Response(303, b"", {"Location": f"/_viewer/messages/{quote(arrived[0]['id'], safe='')}"})

    def viewer_clear(self, request: Request) -> Response:
        """Empty one mailbox (every folder), or all of them; only from the viewer's own pages (the emulator
        refuses cross-site changes before they get here)."""
        address = request.params.get("mailbox")
        if address is None:
            self.backend.clear_mailboxes()
            return Response(303, b"", {"Location": "/"})
        mailbox: Mailbox | None = self.store.find_mailbox(address)
        if mailbox is None:
            return self._missing("mailbox")
        self.store.clear_mailbox(mailbox)
        kept = self.store.find_mailbox(address) is not None
        return Response(303, b"", {"Location": "/?" + urlencode({"mailbox": address}) if kept else "/"})

