"""Recipients as users write them ("Ann <ann@x.com>; bob@y.com" or a list) -> checked addresses."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from airflow_graph_mail.mail.errors import MessageValidationError

# Graph limits a message to 500 recipients over to, cc and bcc together.
MAX_RECIPIENTS = 500

_LOCAL = r"[^\s@<>()\[\]\\,;:\"]+"
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_ADDRESS = re.compile(rf"^{_LOCAL}@(?:{_LABEL}\.)+{_LABEL}$")


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str = ""

    def to_graph(self) -> dict:
        email = {"address": self.address}
        if self.name:
            email["name"] = self.name
        return {"emailAddress": email}


def is_valid_address(address: str) -> bool:
    if not _ADDRESS.match(address) or len(address) > 320:
        return False
    try:  # an internationalized domain must also encode (each label at most 63 characters as punycode)
        address.rpartition("@")[2].encode("idna")
    except UnicodeError:
        return False
    return True


def _split(text: str) -> list[str]:
    """Split on ',' and ';' outside quoted display names and <...>; nothing is merged or dropped."""
    parts, current, quoted, bracket, escaped = [], [], False, False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"' and not bracket:
            quoted = not quoted
        elif char == "<" and not quoted:
            bracket = True
        elif char == ">" and not quoted:
            bracket = False
        elif char in ",;" and not quoted and not bracket:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise ValueError(f"unbalanced quote in {text!r}: close the display name's quotes")
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


_NAMED = re.compile(r"^(?P<name>.*?)\s*<(?P<address>[^<>]*)>$", re.DOTALL)


def _parse_one(text: str) -> Recipient:
    found = _NAMED.match(text)
    if not found:
        return Recipient(address=text)
    name = found["name"].strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return Recipient(address=found["address"].strip(), name=name.strip())


def _entries(value: str | Recipient | Iterable) -> Iterable[str | Recipient]:
    if value is None:
        return []
    if isinstance(value, (str, Recipient)):
        return [value]
    if isinstance(value, dict):
        return [_from_graph(value)]
    return value


def _from_graph(value: dict) -> Recipient:
    email = value.get("emailAddress", value)
    return Recipient(address=str(email.get("address") or ""), name=str(email.get("name") or ""))


def parse_recipients(value, field: str = "to") -> list[Recipient]:
    """Parse one field: a string with ',' or ';' between addresses, a list, or Graph recipient dicts.

    An empty list entry or an address given twice is an error: in a report pipeline both mean the data
    is not what the author thinks.
    """
    found: list[Recipient] = []
    listed = not isinstance(value, (str, Recipient, dict)) and value is not None
    for position, entry in enumerate(_entries(value)):
        if isinstance(entry, dict):
            entry = _from_graph(entry)
        if isinstance(entry, Recipient):
            found.append(entry)
            continue
        if not isinstance(entry, str):
            raise MessageValidationError(field, f"expected an e-mail address string, got {type(entry).__name__}")
        if "\r" in entry or "\n" in entry:
            raise MessageValidationError(field, f"line break in recipient {entry!r}")
        if listed and not entry.strip():
            raise MessageValidationError(f"{field}[{position}]", "empty address: remove the entry or fill it in")
        try:
            found.extend(_parse_one(part) for part in _split(entry))
        except ValueError as err:
            raise MessageValidationError(field, str(err)) from None
    seen: dict[str, Recipient] = {}
    for recipient in found:
        if not is_valid_address(recipient.address):
            raise MessageValidationError(field, f"{recipient.address!r} is not a valid e-mail address"
                                         + _comma_hint(recipient.address, value))
        if recipient.address.lower() in seen:
            raise MessageValidationError(field, f"{recipient.address!r} is listed twice; remove one")
        seen[recipient.address.lower()] = recipient
    return found


def _comma_hint(address: str, value) -> str:
    if "@" not in address and isinstance(value, str) and "," in value:
        return ' (a display name with a comma must be quoted: "Smith, Ann" <ann@example.com>)'
    return ""


def check_duplicates(fields: dict[str, list[Recipient]]) -> None:
    """The same address in two of to/cc/bcc: Exchange delivers once, so the second is a mistake."""
    where: dict[str, str] = {}
    for name, recipients in fields.items():
        for recipient in recipients:
            key = recipient.address.lower()
            if key in where:
                raise MessageValidationError(name, f"{recipient.address!r} is also in {where[key]}; keep it in one")
            where[key] = name


def check_recipient_count(*fields: list[Recipient]) -> None:
    total = sum(len(f) for f in fields)
    if total > MAX_RECIPIENTS:
        raise MessageValidationError(
            "to/cc/bcc", f"{total} recipients; Graph accepts at most {MAX_RECIPIENTS} per message: split the list"
        )
