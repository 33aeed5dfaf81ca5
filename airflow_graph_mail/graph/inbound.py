"""A look at a mailbox folder through GraphMailClient's one road (typed errors, token renewal, pacing): list
what arrived, read one mail's details and marks, mark it, and take what a person sees as "done" (a
category, read, a move). The sensor, the watcher's trigger and the operators all read mail through here, and
the review gates' watch of Drafts asks here which drafts left.

Two ways to ask "what is new": the plain listing (``$filter=receivedDateTime ge ...`` plus the user's own
``$filter``; works in every cloud) and change tracking (``messages/delta``: a poll of an idle folder costs
one request, whatever the folder holds; it takes no ``$filter`` but ``receivedDateTime``, and is not
offered in the China cloud). No Airflow here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlencode

from airflow_graph_mail.errors import (
    GraphConfigError,
    GraphRequestError,
    ItemNotFoundError,
    MailboxNotFoundError,
    MalformedIdError,
    UnexpectedAnswerError,
)
from airflow_graph_mail.graph.call import Call
from airflow_graph_mail.graph.clouds import CLOUDS
from airflow_graph_mail.graph.review import NO_RETRIES, check_message_id
from airflow_graph_mail.graph.submit import submit_once
from airflow_graph_mail.mail.headers import CONTROL
from airflow_graph_mail.mail.inbound import (
    HEADERS_FIELD,
    SUMMARY_FIELDS,
    MailFilter,
    announced_property,
    claimed_property,
    clean,
    property_value,
    summarize,
)

log = logging.getLogger(__name__)

ATTACHMENT_FIELDS = ("id", "name", "contentType", "size", "isInline")
PAGE_SIZE = 50
# Graph's answers that mean "this delta link is no good any more: start again" (410 Gone with a Location,
# or a 4xx with one of these codes).
RESYNC_CODES = {"syncStateNotFound", "resyncRequired", "syncStateInvalid", "SyncStateNotFound"}
# Categories are replaced as a whole: read, add, write; Exchange may answer 412 to a write that raced another.
CATEGORY_TRIES = 3
MAX_PAGES = 10_000  # a listing or delta round this long is a loop, not a mailbox


def offers_delta(client) -> bool:
    """Whether Graph offers change tracking of messages where ``client`` sends: everywhere but the China cloud."""
    return not client.transport.base_url.lower().startswith(CLOUDS["china"].graph_url)


class SyncReset(Exception):
    """The delta link expired (Graph answered 410 or syncStateNotFound): start a new round."""


class MailboxReader:
    """One mailbox's folder (``folder`` None: the whole mailbox for listings, the Inbox for delta), read
    through ``client``. ``retries=False``: each request raises throttling, 5xx or no answer at once (Graph's
    Retry-After on the error), for a trigger that waits on its event loop instead of in a thread."""

    def __init__(self, client, mailbox: str | None = None, folder: str | None = None, *, retries: bool = True):
        self.client = client
        self.mailbox = client.call(mailbox).mailbox  # checked: the connection's sender when None
        if folder is not None and (not isinstance(folder, str) or not folder.strip() or CONTROL.search(folder)):
            raise GraphConfigError(f"folder: {folder!r} is not a folder's well-known name (inbox, archive...) or id")
        self.folder = folder
        self.retries = retries

    def call(self) -> Call:
        """A new operation with its own retry budget (none with ``retries=False``)."""
        call = self.client.call(self.mailbox)
        return call if self.retries else dataclasses.replace(call, budget=NO_RETRIES.budget())

    def _get(self, path: str, call: Call | None = None) -> dict:
        answer = self.client.transport.request(call or self.call(), "GET", path).json()
        if not isinstance(answer, dict):
            raise UnexpectedAnswerError(f"Graph answered GET {path.split('?')[0]} with {type(answer).__name__}")
        return answer

    def _next(self, link) -> str | None:
        """A next or delta link as a path under our base URL; a link to another host is refused (the token
        stays with Graph)."""
        if not link:
            return None
        base = self.client.transport.base_url
        if not isinstance(link, str) or not link.startswith(base + "/"):
            raise UnexpectedAnswerError(f"Graph answered a paging link outside {base}; not following it with the "
                                        "token")
        return link[len(base):]

    @staticmethod
    def marks(scope: str) -> str:
        """``$expand`` for the scope's two marks."""
        return (f"singleValueExtendedProperties($filter=id eq '{announced_property(scope)}' or "
                f"id eq '{claimed_property(scope)}')")

    # -- what arrived -------------------------------------------------------------------------------------

    def listing(self, mail_filter: MailFilter, since: str | None, scope: str | None = None,
                page_size: int = PAGE_SIZE) -> Iterator[dict]:
        """Messages received since ``since`` (UTC text) that Graph's side of the filter lets through, oldest
        first, with the scope's marks; page after page."""
        params = {"$filter": mail_filter.server_filter(since), "$orderby": "receivedDateTime",
                  "$select": ",".join(SUMMARY_FIELDS), "$top": str(page_size)}
        if scope:
            params["$expand"] = self.marks(scope)
        call = self.call()
        path: str | None = f"{call.messages_path(self.folder)}?{urlencode(params, quote_via=quote)}"
        for _ in range(MAX_PAGES):
            if path is None:
                return
            page = self._get(path, call)
            yield from (m for m in page.get("value") or [] if isinstance(m, dict) and isinstance(m.get("id"), str))
            path = self._next(page.get("@odata.nextLink"))
        raise UnexpectedAnswerError(f"Graph's listing of {self.mailbox} went on for {MAX_PAGES:,} pages")

    def delta(self, link: str | None, since: str) -> tuple[list[dict], str]:
        """One round of change tracking: the messages created in the folder since the last round (``link``:
        the delta link it ended with, as a path; None for a first round, of the mail received since
        ``since``), and the new delta link. SyncReset when Graph no longer knows the link."""
        params = {"changeType": "created", "$select": ",".join(SUMMARY_FIELDS),
                  "$filter": f"receivedDateTime ge {since}"}
        changes, link = self._delta_round(link, params)
        return [m for m in changes if "@removed" not in m], link

    def departures(self, link: str | None, wanted: set[str]) -> tuple[set[str], set[str], str]:
        """One round of change tracking of the folder's ids: (the ``wanted`` ids present: on a first round,
        ``link`` None, those the folder holds, after it those created or changed), (every id that left: deleted,
        sent or moved away; none on a first round), and the new delta link. Ids neither wanted nor gone are
        dropped page by page (a folder of 100,000 costs no more memory than one of ten). Pages of Graph's own
        size: ``$top`` on a delta may end the round early rather than size its pages. SyncReset when Graph no
        longer knows the link."""
        changes, link = self._delta_round(link, {"$select": "id"},
                                          keep=lambda message: "@removed" in message or message["id"] in wanted)
        left = {m["id"] for m in changes if "@removed" in m}
        return {m["id"] for m in changes} - left, left, link

    def _delta_round(self, link: str | None, first: dict[str, str],
                     keep: Callable[[dict], bool] = lambda message: True) -> tuple[list[dict], str]:
        """A delta round's changes (those with an id that ``keep`` keeps) and the delta link it ended with, from
        ``link`` or from a first request with the options ``first``."""
        call = self.call()
        if link is None:
            folder = quote(self.folder or "inbox", safe="")
            path: str | None = f"{call.user_path}/mailFolders/{folder}/messages/delta?" + \
                urlencode(first, quote_via=quote)
        else:
            path = link
        found: list[dict] = []
        for _ in range(MAX_PAGES):
            try:
                page = self._get(str(path), call)
            except GraphRequestError as err:
                if err.status == 410 or (400 <= err.status < 500 and err.code in RESYNC_CODES):
                    raise SyncReset(f"{err.status} {err.code}") from err
                raise
            found.extend(m for m in page.get("value") or []
                         if isinstance(m, dict) and isinstance(m.get("id"), str) and keep(m))
            if page.get("@odata.deltaLink"):
                return found, str(self._next(page["@odata.deltaLink"]))
            path = self._next(page.get("@odata.nextLink"))
            if path is None:
                raise UnexpectedAnswerError("Graph ended a delta round without a next or delta link")
        raise UnexpectedAnswerError(f"Graph's delta round of {self.mailbox} went on for {MAX_PAGES:,} pages")

    # -- one mail ------------------------------------------------------------------------------------------

    def message(self, message_id: str, scope: str | None = None, *, headers: bool = True) -> dict:
        """The message's summary fields (its headers too), with the scope's marks."""
        check_message_id(message_id)
        select = (*SUMMARY_FIELDS, HEADERS_FIELD) if headers else SUMMARY_FIELDS
        params = {"$select": ",".join(select)}
        if scope:
            params["$expand"] = self.marks(scope)
        call = self.call()
        return self._get(f"{call.message_path(message_id)}?{urlencode(params, quote_via=quote)}", call)

    def attachments(self, message_id: str) -> list[dict]:
        """The message's attachments' metadata (never their bytes): id, name, type, size, inline, kind."""
        call = self.call()
        query = urlencode({"$select": ",".join(ATTACHMENT_FIELDS)}, quote_via=quote)
        path: str | None = f"{call.message_path(message_id)}/attachments?{query}"
        found: list[dict] = []
        for _ in range(MAX_PAGES):
            if path is None:
                return found
            page = self._get(path, call)
            found.extend(a for a in page.get("value") or [] if isinstance(a, dict) and isinstance(a.get("id"), str))
            path = self._next(page.get("@odata.nextLink"))
        raise UnexpectedAnswerError(f"Graph listed attachments of {message_id} for {MAX_PAGES:,} pages")

    def summary(self, message: dict, *, with_attachments: bool) -> dict:
        """``mail.inbound.summarize`` of a message read here, its attachments listed when asked."""
        attachments = self.attachments(message["id"]) if with_attachments and message.get("hasAttachments") \
            else None
        return summarize(message, mailbox=self.mailbox, folder=self.folder, attachments=attachments)

    # -- marks and "done" -----------------------------------------------------------------------------------

    def set_properties(self, message_id: str, values: dict[str, str]) -> None:
        """Single-value extended properties written in one PATCH (setting a value twice is harmless)."""
        call = self.call()
        body = {"singleValueExtendedProperties": [{"id": k, "value": v} for k, v in values.items()]}
        self.client.transport.request(call, "PATCH", call.message_path(message_id), json_body=body,
                                      idempotent=True)

    def claim(self, message_id: str, scope: str, who: str) -> str | None:
        """Write the scope's Claimed mark (``who``: the run that took the mail); returns who else holds it
        (None: nobody but ``who``). Graph has no compare-and-set: the mark is read back after writing, which
        catches most races between two claimers, not all (hence one claimer at a time, or the dispatcher).
        ItemNotFoundError when the mail is gone."""
        before = property_value(self.message(message_id, scope, headers=False), claimed_property(scope))
        if before and before != who:
            return before
        if before != who:
            self.set_properties(message_id, {claimed_property(scope): who})
            after = property_value(self.message(message_id, scope, headers=False), claimed_property(scope))
            if after != who:
                return after or "someone"
        return None

    def add_categories(self, message_id: str, categories: list[str]) -> None:
        """Categories are one list, replaced as a whole: read it, add ours, write it (again after a 412)."""
        for attempt in range(CATEGORY_TRIES):
            call = self.call()
            current = self._get(f"{call.message_path(message_id)}?$select=categories", call).get("categories") or []
            current = [c for c in current if isinstance(c, str)]
            wanted = current + [c for c in categories if c.casefold() not in {x.casefold() for x in current}]
            if wanted == current:
                return
            try:
                self.client.transport.request(call, "PATCH", call.message_path(message_id),
                                              json_body={"categories": wanted}, idempotent=True)
                return
            except GraphRequestError as err:
                if err.status != 412 or attempt == CATEGORY_TRIES - 1:
                    raise
                log.info("Categories of %s changed meanwhile (412); reading them again", message_id)

    def mark_read(self, message_id: str) -> None:
        call = self.call()
        self.client.transport.request(call, "PATCH", call.message_path(message_id), json_body={"isRead": True},
                                      idempotent=True)

    def folder_id(self, folder: str) -> str:
        return self.client.folder_id(folder, call=self.call())

    def move(self, message_id: str, destination: str) -> str:
        """Move the mail (its immutable id stays); after an unclear answer, the mail itself tells where it
        is. Returns the id (the same one) once it is in ``destination``."""
        call = self.call()
        target = self.folder_id(destination)

        def where() -> str | None:
            found = self._get(f"{call.message_path(message_id)}?$select=id,parentFolderId", call)
            return found.get("id") if found.get("parentFolderId") == target else None

        if where():
            return message_id

        def submit() -> str:
            moved = self.client.transport.request(call, "POST", call.message_path(message_id) + "/move",
                                                  json_body={"destinationId": target}, expect=(200, 201)).json()
            return str(moved.get("id") or message_id)

        return submit_once(call, submit, where, what=f"the move of {message_id} to {destination}")

    def mark_done(self, message_id: str, *, move_to: str | None = None, categories: list[str] | tuple = (),
                  read: bool = False) -> str:
        """What a person sees in Outlook once the pipeline took the mail: categories added, read, then moved
        (last: the move is the one step a person notices most). Each step may be repeated safely."""
        if categories:
            self.add_categories(message_id, list(categories))
        if read:
            self.mark_read(message_id)
        if move_to:
            return self.move(message_id, move_to)
        return message_id

    def claim_all(self, summaries: list[dict], scope: str, who: str) -> list[dict]:
        """Claim each mail for ``who``; the ones another claimer took meanwhile, or that are gone, are left out."""
        taken = []
        for summary in summaries:
            try:
                other = self.claim(summary["message_id"], scope, who)
            except ItemNotFoundError:
                log.info("Message %s went away before it could be claimed", summary["message_id"])
                continue
            if other:
                log.info("Message %s was claimed by %s meanwhile; leaving it", summary["message_id"], other)
                continue
            taken.append(summary)
        return taken

    def describe_failure(self, err: Exception, message_id: str = "") -> str:
        """An error in words that name the mailbox and the mail (whose subject never enters a log line)."""
        if isinstance(err, MalformedIdError):
            return f"message_id: Graph cannot read {clean(message_id, 80)!r} as a message id ({err})"
        if isinstance(err, MailboxNotFoundError):
            return f"mailbox: Graph knows no mailbox {self.mailbox!r} ({err})"
        if isinstance(err, ItemNotFoundError) and message_id:
            return f"message {clean(message_id, 80)!r} is not in mailbox {self.mailbox!r} (moved away or deleted)"
        return f"{err} (mailbox {self.mailbox!r})"


def find_mail(reader: MailboxReader, mail_filter: MailFilter, *, since: str | None, until: str | None = None,
              scope: str | None = None, claimer: str | None = None, limit: int = 100) -> list[dict]:
    """Matching mail received from ``since`` until before ``until``, oldest first, as summaries (attachment
    names and Authentication-Results read); with a ``scope``, mail claimed by anyone but ``claimer`` is left
    out. At most ``limit``."""
    found: list[dict] = []
    for message in reader.listing(mail_filter, since, scope):
        if until and str(message.get("receivedDateTime") or "") >= until:
            break  # oldest first: the rest came later
        if not mail_filter.matches(message):
            continue
        holder = property_value(message, claimed_property(scope)) if scope else None
        if holder and holder != claimer:
            continue
        try:
            summary = reader.summary(reader.message(message["id"]), with_attachments=True)
        except ItemNotFoundError:
            continue  # moved or deleted since the listing
        accepted, why = mail_filter.accepts(summary)
        if not accepted:
            log.info("Skipping message %s: %s", message["id"], why)
            continue
        found.append(summary)
        if len(found) >= limit:
            break
    return found
