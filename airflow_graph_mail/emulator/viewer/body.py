"""A message body made safe to show: ``cid:`` links pointed at the attachments, remote loads counted
(the frame's policy blocks them), and the text a reader without HTML would see."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from html import escape
from html.parser import HTMLParser
from urllib.parse import quote, unquote

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
            return part.get_content(), "the message's text/plain part"
    content = body.get("content") or ""
    if (body.get("contentType") or "text").lower() != "html":
        return content, "the message's text body"
    return html_to_text(content), "no text part was sent: this is the text of the HTML body"


_LINE, _PARAGRAPH = "\x00", "\x01"  # breaks as the parser meets them; a run of them becomes one
_BREAKS = re.compile(r"[ \t]*[\x00\x01][\x00\x01 \t]*")


class _TextOf(HTMLParser):
    PARAGRAPHS = {"blockquote", "dl", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "ol", "p", "pre", "table", "ul"}
    LINES = {"address", "article", "dd", "div", "dt", "footer", "header", "li", "section", "tr"}
    HIDDEN = {"head", "script", "style", "template", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0
        self.pre = 0

    def _break(self, lines: int) -> None:
        """End the line (``lines=2``: and leave a blank one); html_to_text merges neighbouring breaks."""
        self.parts.append(_PARAGRAPH if lines == 2 else _LINE)

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append("\t")
        elif tag in self.PARAGRAPHS or tag in self.LINES:
            self._break(2 if tag in self.PARAGRAPHS else 1)
            self.pre += tag == "pre"
            if tag == "li":
                self.parts.append("- ")
        elif tag == "img" and dict(attrs).get("alt"):
            self.parts.append(f"[{dict(attrs)['alt']}]")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.PARAGRAPHS or tag in self.LINES:
            self.pre -= tag == "pre" and self.pre > 0
            self._break(2 if tag in self.PARAGRAPHS else 1)

    def handle_data(self, data):
        if not self.hidden:
            data = data.replace(_LINE, "").replace(_PARAGRAPH, "")
            self.parts.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: paragraphs apart, table rows on lines with cells split by tabs."""
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    text = _BREAKS.sub(lambda run: "\n\n" if _PARAGRAPH in run.group() else "\n", "".join(parser.parts))
    lines = [line.strip(" ").replace(" \t", "\t").replace("\t ", "\t").lstrip("\t") for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
