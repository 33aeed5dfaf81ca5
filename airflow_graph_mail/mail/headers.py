"""Header names and values, checked the same way wherever a header can be given.

A name is an RFC 5322 field name: printable ASCII without space or colon. A value holds no CR, LF or
NUL, which would end the header and start another (header injection on the MIME path).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from airflow_graph_mail.errors import MessageValidationError

_FIELD_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")
_BREAKS = re.compile(r"[\r\n\x00]")
# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators: never part of an address,
# a display name or a file name.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# Headers that route mail or shape the MIME itself: custom headers may not set them (Graph reads the
# recipients of a MIME message from its headers, so a "Bcc" custom header would add a recipient).
ROUTING = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
_RESERVED = (*ROUTING, "from", "sender", "resent-from", "resent-sender", "mime-version", "content-type",
             "content-transfer-encoding", "content-disposition")


def no_line_breaks(field: str, value: str) -> str:
    """A one-line text (a subject, a header value): CR, LF and NUL would start a new header."""
    found = _BREAKS.search(value)
    if found:
        raise MessageValidationError(field, f"must not contain a line break or NUL ({found.group()!r} at "
                                     f"position {found.start()}); remove it")
    return value


def text(field: str, value, *, default: str = "") -> str:
    """A text field given as a string (or a number a native template rendered); anything else is refused."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MessageValidationError(field, f"expected text, got {type(value).__name__}")
    return str(value)


def check_header(field: str, name, value) -> tuple[str, str]:
    """One header: a valid field name and a one-line value (text or a number)."""
    if not isinstance(name, str) or not _FIELD_NAME.match(name):
        raise MessageValidationError(field, f"{name!r} is not a valid header name: use printable ASCII without "
                                     "spaces or colons, such as X-Report-Id")
    value = text(f"{field}[{name}]", value, default=None)  # type: ignore[arg-type]
    if value is None:
        raise MessageValidationError(f"{field}[{name}]", "has no value; give text or remove the header")
    return name, no_line_breaks(f"{field}[{name}]", value)


def is_custom_header(name: str) -> bool:
    """Graph's JSON carries a custom header only when its name starts with ``x-``; others need MIME."""
    return name.lower().startswith("x-")


def check_custom_header(field: str, name: str) -> str:
    """A header for Graph's ``internetMessageHeaders``: an ``x-`` name, or an error saying so."""
    if not is_custom_header(name):
        raise MessageValidationError(field, f"{name!r}: Graph accepts only custom headers whose name starts "
                                     "with 'x-'")
    return name


def check_headers(field: str, headers) -> dict[str, str]:
    """A dict of header name to value, every entry checked; a name given twice in two cases is refused."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise MessageValidationError(field, f"expected a dict of header name to value, got "
                                     f"{type(headers).__name__} (e.g. {{'X-Report-Id': 'q3'}})")
    checked: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, value in headers.items():
        name, value = check_header(field, name, value)
        if name.lower() in seen:
            raise MessageValidationError(field, f"{seen[name.lower()]!r} and {name!r} are the same header; "
                                         "keep one")
        seen[name.lower()] = name
        checked[name] = value
    return checked


def check_custom_mime_header(field: str, name: str) -> None:
    """A custom header that goes into MIME must not replace the recipients, the sender or the structure."""
    if name.lower() in _RESERVED:
        what = "to, cc and bcc" if name.lower() in ROUTING else "from_email" if "from" in name.lower() or \
            "sender" in name.lower() else "nothing: the message's structure is built for you"
        raise MessageValidationError(field, f"{name!r} cannot be set as a custom header; use {what}")
