"""Recipients as users write them ("Ann <ann@x.com>; bob@y.com" or a list) -> checked addresses."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from airflow_graph_mail.errors import MessageValidationError
from airflow_graph_mail.mail.headers import CONTROL

# Exchange Online limits a message to 500 recipients over to, cc and bcc together by default; an admin can set
# 1 to 1000. A message is built against the most any mailbox takes; the client checks its mailbox's own limit
# (the connection's ``recipient_limit``) before sending.
MAX_RECIPIENTS = 500
MOST_RECIPIENTS = 1000
# A message's recipient fields as this provider names them -> as Graph's JSON does.
RECIPIENT_FIELDS = {"to": "toRecipients", "cc": "ccRecipients", "bcc": "bccRecipients", "reply_to": "replyTo"}

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
        ascii_domain(address.rpartition("@")[2])
    except UnicodeError:
        return False
    return True


def ascii_domain(domain: str) -> str:
    """A domain as DNS and MIME headers carry it: IDNA A-labels (bücher.example -> xn--bcher-kva.example)."""
    return domain.encode("idna").decode("ascii").lower()


def check_sender(field: str, sender) -> str:
    """The mailbox a call acts on: 'me' (delegated), a user's object id (a GUID), or an address."""
    if not isinstance(sender, str) or not sender.strip():
        raise MessageValidationError(field, f"expected a mailbox address, 'me' or a user's object id, got "
                                     f"{sender!r}")
    if CONTROL.search(sender):
        raise MessageValidationError(field, f"{sender!r} is not a mailbox: it holds a line break or control "
                                     "character")
    sender = sender.strip()
    if sender.lower() == "me" or _is_object_id(sender) or is_valid_address(sender):
        return sender
    raise MessageValidationError(field, f"{sender!r} is not a mailbox: give its address (reports@contoso.com), "
                                 "'me' with a refresh token, or the user's object id")


def _is_object_id(text: str) -> bool:
    try:
        return len(text) == 36 and bool(uuid.UUID(text))
    except ValueError:
        return False


# The pieces _split walks over: a quoted display name (backslash escapes inside), an <address> (quotes in it are
# plain characters; it may be left open), a run of anything else, a separator, or a quote never closed.
_PIECES = re.compile(r'"(?:[^"\\]|\\.)*"|<[^>]*>?|[^"<,;]+|[,;]|"', re.DOTALL)


def _split(text: str) -> list[str]:
    """Split on ',' and ';' outside quoted display names and <...>; nothing is merged or dropped."""
    parts: list[str] = []
    current: list[str] = []
    for piece in _PIECES.findall(text):
        if piece in (",", ";"):
            parts.append("".join(current))
            current = []
        elif piece == '"':
            raise ValueError(f"unbalanced quote in {text!r}: close the display name's quotes")
        else:
            current.append(piece)
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


def parse_shape(text: str) -> list[Recipient]:
    """A recipient string split and read ("Name <address>"), nothing checked yet: the shape a template's
    own text gives before its values fill it in (a mail merge). ValueError on an unbalanced quote."""
    return [_parse_one(part) for part in _split(text)]


def _entries(value, field: str) -> Iterable:
    if value is None:
        return []
    if isinstance(value, (str, Recipient, Mapping)):
        return [value]
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    raise MessageValidationError(field, f"expected addresses as a string or a list, got {type(value).__name__}")


def one_of(field: str, value: Mapping, name: str):
    """The property ``name`` of a Graph-shaped dict, matched in any case as Graph does; given twice (in two
    spellings) is refused rather than one of them silently dropped."""
    found = [key for key in value if isinstance(key, str) and key.lower() == name.lower()]
    if len(found) > 1:
        raise MessageValidationError(field, f"{' and '.join(map(repr, found))} are the same property; keep one")
    return value[found[0]] if found else None


def _from_graph(value: Mapping, field: str) -> Recipient:
    """{"emailAddress": {"address", "name"}} in any case (or the inner dict alone) -> a Recipient."""
    email = one_of(field, value, "emailAddress")
    email = value if email is None else email
    if not isinstance(email, Mapping):
        raise MessageValidationError(field, f"recipient {value!r}: emailAddress must be a dict with an address")
    address, name = one_of(field, email, "address"), one_of(field, email, "name")
    if not address:
        raise MessageValidationError(field, f"recipient {value!r} has no emailAddress.address")
    for part, given in (("address", address), ("name", name)):
        if given is not None and not isinstance(given, str):
            raise MessageValidationError(field, f"recipient {value!r}: emailAddress.{part} must be text, got "
                                         f"{type(given).__name__}")
    return Recipient(address=address.strip(), name=(name or "").strip())


def parse_recipients(value, field: str = "to") -> list[Recipient]:
    """Parse one field: a string with ',' or ';' between addresses, a list, or Graph recipient dicts.

    An empty list entry or an address given twice is an error: in a report pipeline both mean the data
    is not what the author thinks.
    """
    found: list[Recipient] = []
    listed = not isinstance(value, (str, Recipient, Mapping)) and value is not None
    for position, entry in enumerate(_entries(value, field)):
        if isinstance(entry, Mapping):
            entry = _from_graph(entry, field)
        if isinstance(entry, Recipient):
            if not isinstance(entry.address, str) or not isinstance(entry.name, str):
                raise MessageValidationError(field, f"{entry!r}: address and name must be text")
            _no_controls(field, entry.address + entry.name, repr(entry.address))
            found.append(entry)
            continue
        if not isinstance(entry, str):
            raise MessageValidationError(field, f"expected an e-mail address string, got {type(entry).__name__}")
        _no_controls(field, entry, repr(entry))
        if listed and not entry.strip():
            raise MessageValidationError(f"{field}[{position}]", "empty address: remove the entry or fill it in")
        try:
            found.extend(parse_shape(entry))
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


def _no_controls(field: str, text: str, shown: str) -> None:
    """CR, LF, NUL and other controls would split or forge a header once the address is written to MIME."""
    found = CONTROL.search(text)
    if found:
        kind = "line break" if found.group() in "\r\n\u2028\u2029" else "control character"
        raise MessageValidationError(field, f"{kind} {found.group()!r} in recipient {shown}; remove it")


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


def check_recipient_count(*fields: list[Recipient], limit: int = MOST_RECIPIENTS) -> None:
    total = sum(len(f) for f in fields)
    if total > limit:
        raise MessageValidationError("to/cc/bcc", recipient_limit_problem(total, limit))


def recipient_limit_problem(total: int, limit: int) -> str:
    """What is wrong with ``total`` recipients for a mailbox that takes ``limit`` per message, and the fix."""
    if limit >= MOST_RECIPIENTS:
        return f"{total} recipients; Exchange Online accepts at most {MOST_RECIPIENTS} per message: split the list"
    return (f"{total} recipients; the mailbox accepts at most {limit} per message (the connection's "
            f"recipient_limit; Exchange Online's default is {MAX_RECIPIENTS}, an admin can set 1 to "
            f"{MOST_RECIPIENTS}): split the list, or raise both the mailbox's limit and recipient_limit")
