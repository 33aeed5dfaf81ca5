"""A message body made safe to show: ``cid:`` links pointed at the attachments, remote loads counted
(the frame's policy blocks them), and the text a reader without HTML would see."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from html import escape
from urllib.parse import quote, unquote

from graph_mail_emulator.backend.mime import text_of
from graph_mail_emulator.backend.text import html_to_text

_CID = re.compile(r"""\bcid:([^\s"'()<>]+)""", re.IGNORECASE)
# Attributes and CSS that make a browser fetch something (links the reader clicks are not counted).
_REMOTE = re.compile(r"""(?:\b(?:src|srcset|background|poster|data)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?"""
                     r"""|<link\b[^>]*?\bhref\s*=\s*["']?)\s*(?:https?:)?//""", re.IGNORECASE)
_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)
# Links open outside the frame; the frame itself never navigates away.
_FRAME_HEAD = '<meta charset="utf-8"><base target="_blank">'
_TEXT_STYLE = "<style>pre{white-space:pre-wrap;font:14px/1.45 ui-monospace,monospace;margin:12px}</style>"


def framed_document(body: dict, cid_base: str) -> str:
    """The HTML document the viewer's frame loads for a Graph body ({contentType, content})."""
    content = body.get("content") or ""
    if (body.get("contentType") or "text").lower() != "html":
        return f"<!doctype html>{_FRAME_HEAD}{_TEXT_STYLE}<pre>{escape(content)}</pre>"
    content = _CID.sub(lambda found: cid_base + quote(unquote(found.group(1)), safe=""), content)
    doctype = _DOCTYPE.match(content)
    if doctype:
        return doctype.group(0) + _FRAME_HEAD + content[doctype.end():]
    return _FRAME_HEAD + content


def remote_references(body: dict) -> int:
    """How many things the HTML would fetch from elsewhere (tracking pixels, remote images and styles)."""
    if (body.get("contentType") or "").lower() != "html":
        return 0
    return len(_REMOTE.findall(body.get("content") or ""))


def text_body(body: dict, raw_mime: bytes | None) -> tuple[str, str]:
    """(text, where it came from): the MIME's text/plain part, a text body, or text taken from the HTML."""
    if raw_mime:
        part = BytesParser(policy=policy.default).parsebytes(raw_mime).get_body(preferencelist=("plain",))
        if part is not None:
            return text_of(part), "the message's text/plain part"
    content = body.get("content") or ""
    if (body.get("contentType") or "text").lower() != "html":
        return content, "the message's text body"
    return html_to_text(content), "no text part was sent: this is the text of the HTML body"
