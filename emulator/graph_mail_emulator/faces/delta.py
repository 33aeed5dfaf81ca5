"""``GET .../mailFolders/{id}/messages/delta``: change tracking as Microsoft's "Get incremental changes to
messages in a folder" and "message: delta" pages describe it.

A round is one or more GETs: the first without a token lists the folder (``$select``, ``$top``, ``$expand``,
``$filter=receivedDateTime ge|gt {value}`` and at most 5,000 messages with it, ``$orderby=receivedDateTime
desc`` only, ``changeType=created|updated|deleted`` for the rounds after it, no ``$search``), each page ending
with an ``@odata.nextLink`` until the last gives an ``@odata.deltaLink``. The next round, from that link,
reports what changed since: messages that arrived or changed (with the selected properties), and
``{"id", "@removed": {"reason": "deleted"}}`` for those deleted or moved out. The options live in the links'
opaque tokens; a link is used as given. ``Prefer: odata.maxpagesize`` sets each page's size. A token the
emulator has dropped (``inbound.expire_delta_links()``) is answered ``syncStateNotFound`` (410 with
``Location``, the round's initial URL, or 400).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from urllib.parse import quote, urlencode

from graph_mail_emulator.backend import MailBackend
from graph_mail_emulator.backend.changes import Change
from graph_mail_emulator.backend.store import IMMUTABLE_ID, Mailbox
from graph_mail_emulator.errors import GraphError, bad_request
from graph_mail_emulator.faces import expand, resource
from graph_mail_emulator.faces.access import Access
from graph_mail_emulator.faces.attachment_reads import expanded_attachments
from graph_mail_emulator.faces.listing import DEFAULT_PAGE, MAX_PAGE
from graph_mail_emulator.http.wire import Request, Response
from graph_mail_emulator.site import Site

FILTERED_MAXIMUM = 5000  # "Applying $filter in a delta query returns only up to 5,000 messages."
_CHANGE_TYPES = ("created", "updated", "deleted")
_INITIAL_OPTIONS = {"$select", "$top", "$expand", "$filter", "$orderby", "changetype"}
_FILTER = re.compile(r"^\s*receivedDateTime\s+(ge|gt)\s+(\S+)\s*$", re.IGNORECASE)
_ORDER = re.compile(r"^\s*receivedDateTime\s+desc\s*$", re.IGNORECASE)
_MAX_TOKEN = 8192
_PATH_SAFE = "/()'$:@!,;=+-._~%"


class DeltaResponses:
    def __init__(self, backend: MailBackend, access: Access, site: Site):
        self.backend = backend
        self.store = backend.store
        self.changes = backend.changes
        self.access = access
        self.site = site

    def delta_messages(self, request: Request) -> Response:
        mailbox = self.access.mailbox(request, ("Mail.ReadWrite", "Mail.Read"))
        folder = self.store.resolve_folder(mailbox, request.params["folder"])
        pairs = [(k, v) for k, v in request.query_pairs]
        tokens = [(k, v) for k, v in pairs if k.lower() in ("$skiptoken", "$deltatoken")]
        if tokens:
            if len(pairs) != 1:
                raise bad_request("BadRequest", "A nextLink or deltaLink is used as given: its token holds the "
                                  "query options of the round's first request; add none to it.")
            state = self._decode(tokens[0][1], mailbox, folder)
        else:
            state = self._start(pairs, mailbox, folder)
        if state["s"] < self.changes.floor():
            headers = {"Location": self._link(request, state["q"])} if self.changes.expired_status == 410 else {}
            raise GraphError(self.changes.expired_status, "syncStateNotFound", "The sync state was not found: the "
                             "delta token has expired. Start a new round with the initial delta request.", headers)
        page_size, applied = self._page_size(request, state)
        if state["p"] == "i":
            values, done = self._initial_page(request, mailbox, folder, state, page_size)
        else:
            values, done = self._changes_page(request, mailbox, folder, state, page_size)
        body: dict = {"@odata.context": f"{request.origin(self.site.base_url)}/{request.params['version']}"
                                        "/$metadata#Collection(message)"}
        if done:  # the next round reports what comes after what this one read
            since = state["u"] if state["p"] == "c" else state["s"]
            next_state = {**state, "p": "c", "s": since, "u": None, "c": None, "n": 0}
            body["@odata.deltaLink"] = self._link(request, "$deltatoken=" + _encode(next_state))
        else:
            body["@odata.nextLink"] = self._link(request, "$skiptoken=" + _encode(state))
        body["value"] = values
        headers = {"Preference-Applied": f"odata.maxpagesize={page_size}"} if applied else {}
        return Response.json(200, body, headers)

    # -- a round's state ---------------------------------------------------------------------------------

    def _start(self, pairs: list[tuple[str, str]], mailbox: Mailbox, folder: str) -> dict:
        """The first request of a round: its options checked (as the delta page allows them) into a state."""
        options: dict[str, str] = {}
        for name, value in pairs:
            lowered = name.lower()
            if lowered == "$search":
                raise bad_request("BadRequest", "$search is not supported on delta queries.")
            if lowered.startswith("$") or lowered == "changetype":
                if lowered not in _INITIAL_OPTIONS:
                    raise bad_request("BadRequest", f"Query option '{name}' is not supported on a messages delta "
                                      "query (it takes $select, $top, $expand, $filter, $orderby and changeType).")
                if lowered in options:
                    raise bad_request("BadRequest", f"Query option '{name}' was specified more than once.")
                options[lowered] = value
        names = resource.selected(options.get("$select"))
        expand.parse(options.get("$expand"))  # refused now, not on a later page
        when = None
        if "$filter" in options:
            found = _FILTER.match(options["$filter"])
            if found is None:
                raise bad_request("BadRequest", "The only $filter a messages delta query takes is receivedDateTime "
                                  "ge {value} or receivedDateTime gt {value}.")
            when = [found.group(1).lower(), _instant(found.group(2))]
        if "$orderby" in options and not _ORDER.match(options["$orderby"]):
            raise bad_request("BadRequest", "The only $orderby a messages delta query takes is receivedDateTime desc.")
        change_type = options.get("changetype")
        if change_type is not None and change_type.lower() not in _CHANGE_TYPES:
            raise bad_request("BadRequest", f"changeType '{change_type}': created, updated or deleted.")
        top = None
        if "$top" in options:
            if not re.fullmatch(r"[0-9]{1,7}", options["$top"].strip()) or int(options["$top"]) < 1:
                raise bad_request("BadRequest", f"Invalid value '{options['$top']}' for $top: a positive integer.")
            top = min(int(options["$top"]), MAX_PAGE)
        return {"v": 1, "m": mailbox.id, "f": folder, "p": "i", "s": self.changes.latest(), "u": None, "c": None,
                "n": 0, "q": urlencode(pairs), "sel": list(names) if names is not resource.DEFAULT_PROPERTIES else None,
                "exp": options.get("$expand"), "flt": when, "ct": change_type.lower() if change_type else None,
                "top": top}

    def _decode(self, token: str, mailbox: Mailbox, folder: str) -> dict:
        """A token the emulator minted for this mailbox and folder, or a clear 400."""
        try:
            if len(token) > _MAX_TOKEN:
                raise ValueError
            state = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            valid = (isinstance(state, dict) and state.get("v") == 1 and state.get("m") == mailbox.id
                     and state.get("f") == folder and state.get("p") in ("i", "c")
                     and all(isinstance(state.get(k), int) for k in ("s", "n"))
                     and isinstance(state.get("q"), str))
            if not valid:
                raise ValueError
            cursor = state.get("c")
            if state["p"] == "c" and not (isinstance(state.get("u"), (int, type(None))) and
                                          (cursor is None or (isinstance(cursor, int) and cursor >= 0))):
                raise ValueError
            if state["p"] == "i" and cursor is not None and not (
                    isinstance(cursor, list) and len(cursor) == 2 and isinstance(cursor[0], (int, float))
                    and isinstance(cursor[1], int)):
                raise ValueError
            names = resource.selected(",".join(state["sel"])) if state.get("sel") else resource.DEFAULT_PROPERTIES
            expand.parse(state.get("exp"))
            state["flt"] = [state["flt"][0], _instant(state["flt"][1])] if state.get("flt") else None
            state["_names"] = names
        except (ValueError, TypeError, KeyError, IndexError, binascii.Error, UnicodeDecodeError, RecursionError,
                GraphError):
            raise bad_request("BadRequest", "The delta token is not one this mailbox folder's delta query issued; "
                              "use the nextLink or deltaLink exactly as it was returned.") from None
        return state

    def _page_size(self, request: Request, state: dict) -> tuple[int, bool]:
        prefer = re.search(r"odata\.maxpagesize\s*=\s*([0-9]+)", request.headers.get("prefer", ""), re.IGNORECASE)
        if prefer:
            asked = prefer.group(1).lstrip("0") or "0"
            return min(max(int(asked) if len(asked) <= 4 else MAX_PAGE, 1), MAX_PAGE), True
        return state.get("top") or DEFAULT_PAGE, False

    def _link(self, request: Request, query: str) -> str:
        path = quote(request.path, safe=_PATH_SAFE)
        return f"{request.origin(self.site.base_url)}{path}" + (f"?{query}" if query else "")

    # -- pages ------------------------------------------------------------------------------------------

    def _initial_page(self, request: Request, mailbox: Mailbox, folder: str, state: dict,
                      page_size: int) -> tuple[list[dict], bool]:
        """The folder as it is, newest first, from the cursor on; done when nothing is left (or, with a
        filter, 5,000 messages were given)."""
        values: list[dict] = []
        cursor = tuple(state["c"]) if state.get("c") else None
        while len(values) < page_size:
            rows = self.changes.current(mailbox, folder, cursor, page_size)
            if not rows:
                return values, True
            for created, rowid, message in rows:
                cursor = (created, rowid)
                if self._matches(message, state):
                    values.append(self._shown(request, message, state))
                    state["n"] += 1
                    if state["flt"] and state["n"] >= FILTERED_MAXIMUM:
                        return values, True
                    if len(values) == page_size:
                        break
        state["c"] = list(cursor) if cursor else None
        return values, False

    def _changes_page(self, request: Request, mailbox: Mailbox, folder: str, state: dict,
                      page_size: int) -> tuple[list[dict], bool]:
        """What changed after the round's start, one page of messages at a time."""
        if state["u"] is None:  # the round's first request fixes where it ends
            state["u"] = self.changes.latest()
        immutable = request.immutable_ids
        keys = self.changes.changed(mailbox, folder, state["s"], state["u"], immutable)
        offset = state["c"] if isinstance(state.get("c"), int) else 0
        chosen = keys[offset:offset + page_size]
        values = [shown for change in self.changes.describe(mailbox, folder, chosen, state["s"], state["u"],
                                                            immutable)
                  if (shown := self._change(request, change, state)) is not None]
        state["c"] = offset + len(chosen)
        return values, state["c"] >= len(keys)

    def _change(self, request: Request, change: Change, state: dict) -> dict | None:
        wanted = state.get("ct")
        if change.message is None:
            if wanted in (None, "deleted"):
                return {"@odata.type": "#microsoft.graph.message", "id": change.key,
                        "@removed": {"reason": "deleted"}}
            return None
        if wanted == "deleted" or (wanted == "created" and not change.created) or \
                (wanted == "updated" and change.created) or not self._matches(change.message, state):
            return None
        return self._shown(request, change.message, state)

    def _matches(self, message: dict, state: dict) -> bool:
        if not state.get("flt"):
            return True
        operator, when = state["flt"]
        received = _instant(message.get("receivedDateTime") or message.get("createdDateTime") or "")
        return received >= when if operator == "ge" else received > when

    def _shown(self, request: Request, message: dict, state: dict) -> dict:
        names = state.get("_names") or (resource.selected(",".join(state["sel"])) if state.get("sel")
                                        else resource.DEFAULT_PROPERTIES)
        full = resource.full(message, resource.web_link(self.site.base_url, message["id"]))
        expansion = expand.parse(state.get("exp"))
        if "attachments" in expansion:
            full["_attachments"] = expanded_attachments(self.store, full, expansion["attachments"])
        shown_id = full[IMMUTABLE_ID] if request.immutable_ids and IMMUTABLE_ID in full else full["id"]
        return {"@odata.type": "#microsoft.graph.message", **resource.project(full, names, shown_id),
                **expand.expanded(full, expansion)}


def _encode(state: dict) -> str:
    kept = {k: v for k, v in state.items() if not k.startswith("_")}
    kept["flt"] = [kept["flt"][0], kept["flt"][1].strftime("%Y-%m-%dT%H:%M:%SZ")] if kept.get("flt") else None
    return base64.urlsafe_b64encode(json.dumps(kept, separators=(",", ":")).encode()).decode().rstrip("=")


def _instant(text) -> dt.datetime:
    """An OData DateTimeOffset (2024-05-01T08:00:00Z), as the filter and the messages give it."""
    value = str(text).strip().strip("'")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request("BadRequest", f"'{value}' is not a date and time such as 2024-05-01T08:00:00Z.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
