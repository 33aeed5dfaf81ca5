"""Listing messages with the query options clients send: ``$select``, ``$top``, ``$skip``, ``$orderby``,
``$count``, ``$search``, ``$filter``, and paging by ``@odata.nextLink`` (or ``Prefer: odata.maxpagesize``),
with Graph's rules for how they combine.

Graph lists newest first (by ``receivedDateTime``); ``$top`` is the page size (10 by default, at most
1,000); ``$orderby`` with ``$filter`` must name the filter's properties first and in the same order, or
Graph answers ``InefficientFilter``; ``$search`` takes neither ``$filter``, ``$orderby`` nor ``$skip``.
``$expand`` brings extended properties (``expand.py``). An option given twice, or empty where it needs a
value, is refused with OData's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from graph_mail_emulator.errors import bad_request
from graph_mail_emulator.faces import expand, odata_filter
from graph_mail_emulator.faces.resource import DEFAULT_PROPERTIES, selected
from graph_mail_emulator.http.wire import Request

DEFAULT_PAGE = 10
MAX_PAGE = 1000
_ORDERABLE = {name.lower(): name for name in (
    "receivedDateTime", "sentDateTime", "createdDateTime", "lastModifiedDateTime", "subject", "importance",
    "isRead", "hasAttachments", "isDraft", "conversationId", "inferenceClassification")}
_ORDERABLE.update({"from/emailaddress/address": "from/emailAddress/address",
                   "from/emailaddress/name": "from/emailAddress/name", "flag/flagstatus": "flag/flagStatus"})
_SEARCH_FIELDS = ("subject", "body", "from", "to", "cc", "bcc", "participants", "attachment")
_IMPORTANCE_RANK = {"low": 0, "normal": 1, "high": 2}
_KNOWN_OPTIONS = {"$select", "$top", "$skip", "$orderby", "$count", "$search", "$filter", "$expand", "$format"}
_INT64_MAX = 2**63 - 1  # $top and $skip are Edm.Int64
_SEARCH_TERM = re.compile(r'(?:[^\s"]+|"[^"]*")+')  # a word, with any quoted (phrase) parts


@dataclass
class ListQuery:
    names: tuple[str, ...] = DEFAULT_PROPERTIES
    page: int = DEFAULT_PAGE
    skip: int = 0
    order: list[tuple[str, bool]] = field(default_factory=list)  # (property path, descending)
    count: bool = False
    match: Callable[[dict], bool] | None = None  # $filter and $search, over the full resource
    property_lookup: tuple[str, str] | None = None  # the indexed extended-property form of $filter
    page_size_applied: int | None = None  # Prefer: odata.maxpagesize honoured
    expand: expand.Expansion = field(default_factory=dict)

    @property
    def default_order(self) -> bool:
        return not self.order or self.order == [("receivedDateTime", True)]


def parse(request: Request) -> ListQuery:
    query, options = ListQuery(), request.system_options()
    for name in options:
        if name not in _KNOWN_OPTIONS:
            raise bad_request("BadRequest", f"Query option '{name}' is not allowed. Make sure that the query "
                              "option is spelled correctly.")
    query.expand = expand.parse(options.get("$expand"))
    query.names = selected(options.get("$select"))
    query.page = _page_size(request, options, query)
    query.skip = _non_negative(options.get("$skip", "0"), "$skip")
    query.count = _boolean(options.get("$count", "false"), "$count")
    search, expression = options.get("$search"), options.get("$filter")
    if search is not None:
        for other in ("$filter", "$orderby", "$skip"):
            if other in options:
                raise bad_request("ErrorInvalidUrlQuery", f"The query parameter '{other}' is not supported "
                                  "with '$search'.")
        query.match = _search(search)
    if expression is not None:
        parser = odata_filter.FilterParser(expression)
        query.match = parser.parse()
        query.property_lookup = odata_filter.extended_property_lookup(expression)
        query.order = _order(options.get("$orderby"))
        _check_order_follows_filter(query.order, parser.properties)
    else:
        query.order = _order(options.get("$orderby"))
    return query


def _page_size(request: Request, options: dict, query: ListQuery) -> int:
    if "$top" in options:
        return min(_non_negative(options["$top"], "$top"), MAX_PAGE)
    prefer = re.search(r"odata\.maxpagesize\s*=\s*([0-9]+)", request.headers.get("prefer", ""), re.IGNORECASE)
    if prefer:
        asked = prefer.group(1).lstrip("0") or "0"
        query.page_size_applied = min(max(int(asked) if len(asked) <= 4 else MAX_PAGE, 1), MAX_PAGE)
        return query.page_size_applied
    return DEFAULT_PAGE


def _non_negative(value: str, option: str) -> int:
    """ASCII digits only (``str.isdigit`` also takes "²" and "①", which ``int`` refuses), within Int64."""
    digits = value.strip()
    if not re.fullmatch(r"[0-9]{1,19}", digits) or int(digits) > _INT64_MAX:
        raise bad_request("BadRequest", f"Invalid value '{value}' for {option} query option found. The {option} "
                          "query option requires a non-negative integer value.")
    return int(digits)


def _boolean(value: str, option: str) -> bool:
    if value.strip().lower() not in ("true", "false"):
        raise bad_request("BadRequest", f"'{value}' is not a valid count option: {option} takes true or false.")
    return value.strip().lower() == "true"


def _order(text: str | None) -> list[tuple[str, bool]]:
    order = []
    for clause in (text or "").split(","):
        words = clause.split()
        if not words:
            continue
        name = _ORDERABLE.get(words[0].lower())
        if name is None:
            raise odata_filter.unknown_property(words[0])
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise bad_request("BadRequest", f"Syntax error in $orderby at '{clause.strip()}'.")
        order.append((name, len(words) == 2 and words[1].lower() == "desc"))
    return order


def _check_order_follows_filter(order: list[tuple[str, bool]], filtered: list[str]) -> None:
    """Exchange sorts a restricted view only by properties it restricts on, named first, in order."""
    wanted = [name.lower() for name, _ in order]
    if wanted and filtered[:len(wanted)] != wanted:
        raise bad_request("InefficientFilter", "The restriction or sort order is too complex for this operation.")


def _search(text: str) -> Callable[[dict], bool]:
    """KQL's basic form: words (all must match) in subject, body, people or attachment names, or
    ``field:word`` for one of subject, body, from, to, cc, bcc, participants, attachment. Double quotes
    make a phrase; an apostrophe is part of a word (O'Brien)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if text.count('"') % 2:
        raise bad_request("BadRequest", f"Syntax error: the $search value '{text}' has an unclosed quote.")
    words = [w.replace('"', "") for w in _SEARCH_TERM.findall(text) if w.replace('"', "").strip()]
    if not words:
        raise bad_request("BadRequest", "The $search value is empty.")
    terms: list[tuple[str | None, str]] = []
    for word in words:
        name, colon, value = word.partition(":")
        if colon and name.lower() in _SEARCH_FIELDS:
            terms.append((name.lower(), value.casefold()))
        else:
            terms.append((None, word.casefold()))

    def match(message: dict) -> bool:
        fields = _searchable(message)
        return all(needle in (fields[name] if name else fields["all"]) for name, needle in terms)

    return match


def _searchable(message: dict) -> dict[str, str]:
    def people(*names: str) -> str:
        found = []
        for name in names:
            value = message.get(name)
            for person in value if isinstance(value, list) else [value]:
                email = (person or {}).get("emailAddress") or {}
                found += [str(email.get("name") or ""), str(email.get("address") or "")]
        return " ".join(found).casefold()

    fields = {"subject": str(message.get("subject") or "").casefold(),
              "body": str((message.get("body") or {}).get("content") or "").casefold(),
              "from": people("from", "sender"), "to": people("toRecipients"), "cc": people("ccRecipients"),
              "bcc": people("bccRecipients"), "attachment": " ".join(message.get("_attachmentNames", [])).casefold()}
    fields["participants"] = " ".join(fields[n] for n in ("from", "to", "cc", "bcc"))
    fields["all"] = " ".join(fields[n] for n in ("subject", "body", "participants", "attachment"))
    return fields


def sort(messages: list[dict], order: list[tuple[str, bool]]) -> list[dict]:
    """Stable sorts from the last key to the first; missing values sort first ascending, as Exchange's."""
    for name, descending in reversed(order):
        parts = name.split("/")

        def key(message: dict, parts=parts):
            value = odata_filter._walk(message, parts)
            if parts == ["importance"]:
                value = _IMPORTANCE_RANK.get(str(value), 1)
            return (value is not None, value if value is not None else "")

        messages = sorted(messages, key=key, reverse=descending)
    return messages


def next_link(request: Request, origin: str, query: ListQuery, total: int) -> str | None:
    """The URL of the next page, or None on the last; it repeats the query with ``$skip`` moved on."""
    following = query.skip + query.page
    if query.page == 0 or following >= total:
        return None
    params = {k: v for k, v in request.query.items() if k.lower() != "$skip"}
    params["$skip"] = str(following)
    return f"{origin}{request.path}?{urlencode(params)}"
