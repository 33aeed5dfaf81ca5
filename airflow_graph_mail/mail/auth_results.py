"""What the receiving side recorded about a mail's sender: the ``Authentication-Results`` header (RFC 8601)
that Exchange Online Protection adds, read from Graph's ``internetMessageHeaders``.

A ``From`` proves nothing (anyone can write any address); DMARC (or Microsoft's composite ``compauth``)
passing for the From domain does. Only the top-most header is read: it is the one the receiving side added
last, and a sender can put a forged one further down. The header comes from outside, so parsing is bounded
and never raises. Microsoft's form, e.g.::

    spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=contoso.com; dkim=pass (signature was verified)
    header.d=contoso.com;dmarc=pass action=none header.from=contoso.com;compauth=pass reason=100
"""

from __future__ import annotations

import re

HEADER = "authentication-results"
METHODS = ("spf", "dkim", "dmarc", "compauth")
MAX_HEADER = 8192  # characters read of one header: far beyond a real one
_RESULT = re.compile(r"^([a-z][a-z0-9_-]*)\s*=\s*([a-z]+)\b")
_PROPERTY = re.compile(r"\b(header\.from|header\.d|smtp\.mailfrom)\s*=\s*([^\s;]+)")


def _without_comments(text: str) -> str:
    """RFC 5322 comments (nested parentheses, escapes) removed: "(sender IP is ...)" is for people."""
    out, depth, escaped = [], 0, False
    for char in text:
        if escaped:
            escaped = False
            continue
        if char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(char)
    return "".join(out)


def parse(value: str) -> dict:
    """``{"spf": "pass", "dkim": "pass", "dmarc": "pass", "compauth": "pass", "header_from": "contoso.com"}``
    (only what the header holds; results and domains lower-cased)."""
    found: dict = {}
    for part in _without_comments(value[:MAX_HEADER]).split(";"):
        part = part.strip().lower()
        result = _RESULT.match(part)
        if not result:
            continue  # the authserv-id ("mx.contoso.com"), "none", or something unreadable
        method, outcome = result.groups()
        if method in METHODS and method not in found:
            found[method] = outcome
            for name, domain in _PROPERTY.findall(part):
                key = name.replace(".", "_")
                if key not in found:
                    found[key] = domain.strip("<>\"'")[:255]
    return found


def authentication_results(headers) -> dict | None:
    """The top-most Authentication-Results among ``internetMessageHeaders`` as Graph returns them, parsed;
    None when the mail carries none (mail from inside the tenant, or a service that adds none)."""
    for header in headers or []:
        if isinstance(header, dict) and str(header.get("name", "")).strip().lower() == HEADER:
            value = header.get("value")
            return parse(value) if isinstance(value, str) else {}
    return None


def is_authenticated(results: dict, sender: str) -> bool:
    """DMARC or compauth passed, and for the domain of the From address the mail shows (when the header
    names one): a pass for another domain says nothing about this sender."""
    if results.get("dmarc") != "pass" and results.get("compauth") != "pass":
        return False
    header_from = results.get("header_from")
    domain = sender.rsplit("@", 1)[-1].lower() if "@" in sender else ""
    return not header_from or header_from == domain
