"""Recipients as users write them ("Ann <ann@x.com>; bob@y.com" or a list) -> checked addresses."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import getaddresses

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

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


def is_valid_address(address: str) -> bool:
    return bool(_ADDRESS.match(address)) and len(address) <= 320


def _split_semicolons(text: str) -> str:
    """';' is a separator only outside quoted display names."""
    out, quoted = [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        out.append("," if char == ";" and not quoted else char)
    return "".join(out)


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
    """Parse one field (a string with ',' or ';', a list, or Graph recipient dicts); dedupe by address."""
    found: list[Recipient] = []
    for entry in _entries(value):
        if isinstance(entry, dict):
            entry = _from_graph(entry)
        if isinstance(entry, Recipient):
            found.append(entry)
            continue
        if not isinstance(entry, str):
            raise MessageValidationError(field, f"expected an e-mail address string, got {type(entry).__name__}")
        if "\r" in entry or "\n" in entry:
            raise MessageValidationError(field, f"line break in recipient {entry!r}")
        text = _split_semicolons(entry).strip()
        if not text:
            continue
        for name, address in getaddresses([text]):
            if not name and not address:
                raise MessageValidationError(field, f"cannot read an address in {entry!r}")
            found.append(Recipient(address=address.strip(), name=name.strip()))
    unique: dict[str, Recipient] = {}
    for recipient in found:
        if not is_valid_address(recipient.address):
            raise MessageValidationError(
                field, f"{str(recipient) or repr(recipient.address)!s} is not a valid e-mail address"
            )
        unique.setdefault(recipient.address.lower(), recipient)
    return list(unique.values())


def check_recipient_count(*fields: list[Recipient]) -> None:
    total = sum(len(f) for f in fields)
    if total > MAX_RECIPIENTS:
        raise MessageValidationError(
            "to/cc/bcc", f"{total} recipients; Graph accepts at most {MAX_RECIPIENTS} per message: split the list"
        )
