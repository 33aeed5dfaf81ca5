"""Text: an HTML body as a reader without HTML would see it (the viewer's Text tab, Graph's ``bodyPreview``),
and values made safe for a header line."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_LINE, _PARAGRAPH = "\x00", "\x01"  # breaks as the parser meets them; a run of them becomes one
_BREAKS = re.compile(r"[ \t]*[\x00\x01][\x00\x01 \t]*")
# Control characters (C0 and DEL), and the characters Python's str.splitlines also ends a line at.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character or a line break: such a value must never reach a header."""
    return bool(_CONTROL.search(text))


def one_line(text: str) -> str:
    """``text`` with every control character and line break made a space: safe in a header line, where a
    line break would end the header and start a forged one."""
    return _CONTROL.sub(" ", text)


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


def preview(body: dict) -> str:
    """Graph's ``bodyPreview``: the body's first 255 characters of text, whitespace collapsed."""
    content = body.get("content") or ""
    text = html_to_text(content) if (body.get("contentType") or "").lower() == "html" else content
    return " ".join(text.split())[:255]
