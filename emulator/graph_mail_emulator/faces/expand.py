"""``$expand`` on messages, in the one form Graph documents for extended properties:
``singleValueExtendedProperties($filter=id eq '...')`` (and ``multiValueExtendedProperties``), several ids
joined by ``or``. The message then carries the matching properties, after its other properties; a message
without any of them carries none (Microsoft's "Get singleValueLegacyExtendedProperty" page). And
``attachments`` (``attachments($select=name,size)``): the message's attachments, as listing them shows them.

Ids compare as Exchange compares them: a property tag in any spelling (``String 0x001A`` is ``String 0x1a``,
the form Graph answers with), a named property without regard to case or spacing. Every message has a
message class (PidTagMessageClass, ``String 0x001A``): ``IPM.Note`` unless it was given another.
"""

from __future__ import annotations

import re

from graph_mail_emulator.errors import bad_request
from graph_mail_emulator.faces import attachment_reads
from graph_mail_emulator.faces.odata_filter import invalid, tokenize

EXPANDABLE = {"singlevalueextendedproperties": "singleValueExtendedProperties",
              "multivalueextendedproperties": "multiValueExtendedProperties"}
MESSAGE_CLASS = ("String 0x1a", "IPM.Note")
_TAG = re.compile(r"^\s*(\w+)\s+0x([0-9a-f]{1,4})\s*$", re.IGNORECASE)
_ITEM = re.compile(r"^\s*([A-Za-z]+)\s*(?:\((.*)\))?\s*$", re.DOTALL)
_FILTER = re.compile(r"^\s*\$filter\s*=(.*)$", re.IGNORECASE | re.DOTALL)

Expansion = dict[str, list[str]]  # property collection -> the ids asked for


def property_id(text: str) -> str:
    """The id as Graph answers with it: a property tag as ``Type 0x1a``, anything else as given."""
    found = _TAG.match(text)
    return f"{found.group(1)} 0x{int(found.group(2), 16):x}" if found else text


def _key(text: str) -> str:
    return " ".join(property_id(text).split()).casefold()


def parse(text: str | None) -> Expansion:
    """``$expand`` -> {collection: [property ids]}; anything but the documented form is refused."""
    if text is None:
        return {}
    expansion: Expansion = {}
    for item in _split(text):
        found = _ITEM.match(item)
        if found is not None and found.group(1).lower() == "attachments":
            expansion["attachments"] = _attachment_names(found.group(2) or "")
            continue
        if found is None or found.group(1).lower() not in EXPANDABLE:
            raise bad_request("BadRequest", f"The emulator expands extended properties "
                              f"(singleValueExtendedProperties($filter=id eq '...')) and attachments, not "
                              f"'{item.strip()}'.")
        collection = EXPANDABLE[found.group(1).lower()]
        options = _FILTER.match(found.group(2) or "")
        if options is None:
            raise bad_request("BadRequest", f"Expand {collection} with a $filter on the id of the properties "
                              f"wanted: {collection}($filter=id eq 'String 0x001A').")
        expansion.setdefault(collection, []).extend(_ids(options.group(1)))
    return expansion


def _attachment_names(options: str) -> list[str]:
    """``$select=name,size`` inside ``attachments(...)`` -> ["name", "size"]; nothing -> every property."""
    if not options.strip():
        return []
    found = re.match(r"^\s*\$select\s*=(.*)$", options, re.IGNORECASE | re.DOTALL)
    if found is None or not found.group(1).strip():
        raise bad_request("BadRequest", f"Expand attachments with nothing or with $select, such as "
                          f"attachments($select=name,size), not attachments({options}).")
    names = [name.strip() for name in found.group(1).split(",")]
    attachment_reads.selected(",".join(names))  # an unknown name refused now
    return names


def _split(text: str) -> list[str]:
    """The comma-separated items of ``$expand``, leaving commas inside parentheses and quotes alone."""
    items, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and char == "," and depth == 0:
            items.append(text[start:index])
            start = index + 1
    return [*items, text[start:]]


def _ids(expression: str) -> list[str]:
    """``id eq 'a' or (id eq 'b')`` -> ["a", "b"]: comparisons of the id, joined by "or"."""
    tokens, depth = [], 0
    for token in tokenize(expression):
        if token.text in "()":  # they only group an "or" of comparisons: balanced, they change nothing
            depth += 1 if token.text == "(" else -1
            if depth < 0:
                raise invalid(f"unbalanced parentheses in '{expression}'.")
        else:
            tokens.append(token)
    if depth:
        raise invalid(f"unbalanced parentheses in '{expression}'.")
    ids = []
    for index in range(0, len(tokens), 4):
        clause = ["'" if t.kind == "string" else t.text.lower() for t in tokens[index:index + 4]]
        if clause != ["id", "eq", "'"] + (["or"] if index + 4 < len(tokens) else []):
            raise invalid(f"expand extended properties by id only: id eq '...' [or id eq '...'], not "
                          f"'{expression.strip()}'.")
        ids.append(tokens[index + 2].text[1:-1].replace("''", "'"))
    if not ids:
        raise invalid("the filter is empty.")
    return ids


def expanded(message: dict, expansion: Expansion) -> dict:
    """The expanded collections of ``message``: each with the properties asked for that it has."""
    out = {}
    for collection, wanted in expansion.items():
        if collection == "attachments":  # rendered by the face that holds the store
            out["attachments"] = message.get("_attachments", [])
            continue
        stored = [p for p in message.get(collection) or [] if isinstance(p, dict) and "id" in p]
        if collection == "singleValueExtendedProperties":
            stored.append({"id": MESSAGE_CLASS[0], "value": MESSAGE_CLASS[1]})  # shadowed by a stored class
        keys, found, seen = {_key(w) for w in wanted}, [], set()
        for prop in stored:
            key = _key(str(prop["id"]))
            if key in keys and key not in seen:
                seen.add(key)
                found.append({"id": property_id(str(prop["id"])), "value": prop.get("value")})
        if found:
            out[collection] = found
    return out
