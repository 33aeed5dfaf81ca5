"""Hostile requests to the emulator, one row each, in the style of test_bad_inputs.py: every row asserts the
status and Graph's error code it is answered with, and that nothing was stored, attached, uploaded or sent.

Three families: values that would reach a header (attachment metadata, custom header names, the request's
own framing), list query options Graph refuses with a 400 (never a 500), and query options given twice or
empty. Plain HTTP only: no client code stands between the row and the emulator.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from graph_http import simple

INJECTED = "X-Injected"


@dataclass
class Ctx:
    graph: Callable
    emulator: object
    draft: str


@dataclass
class Raw:
    """An answer read off the socket, for requests a client library would refuse to send."""

    status_code: int
    headers: dict
    content: bytes

    def json(self):
        return json.loads(self.content)


def raw(ctx: Ctx, head: str, body: bytes = b"") -> Raw:
    emulator = ctx.emulator
    context = ssl.create_default_context(cafile=str(emulator.ca_path))
    with socket.create_connection((emulator.site.host, emulator.site.port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=emulator.site.host) as tls:
        tls.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer:
                top, _, rest = answer.partition(b"\r\n\r\n")
                lines = top.decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:])
                if len(rest) >= int(headers.get("Content-Length", "0")):
                    return Raw(int(lines[0].split()[1]), headers, rest)
    raise AssertionError(f"no complete answer: {answer!r}")


def post_raw(head_lines: str, body: bytes = b"") -> Callable:
    def run(ctx: Ctx) -> Raw:
        site = ctx.emulator.site
        return raw(ctx, f"POST /v1.0/users/{ctx.emulator.default_sender}/sendMail HTTP/1.1\r\n"
                   f"Host: {site.host}:{site.port}\r\nConnection: close\r\n{head_lines}", body)
    return run


def file_attachment(**fields) -> dict:
    return {"@odata.type": "#microsoft.graph.fileAttachment", "name": "a.txt", "contentType": "text/plain",
            "contentBytes": base64.b64encode(b"x").decode(), **fields}


def attach(**fields) -> Callable:
    return lambda ctx: ctx.graph("POST", f"/messages/{ctx.draft}/attachments", json=file_attachment(**fields))


def upload(**item) -> Callable:
    return lambda ctx: ctx.graph("POST", f"/messages/{ctx.draft}/attachments/createUploadSession", json={
        "AttachmentItem": {"attachmentType": "file", "name": "big.bin", "size": 4_000_000, **item}})


def send(**message) -> Callable:
    return lambda ctx: ctx.graph("POST", "/sendMail", json={"message": simple(**message)})


def listing(**params) -> Callable:
    return lambda ctx: ctx.graph("GET", "/messages", params=params)


def query(text: str, path: str = "/messages") -> Callable:
    """A list query written out by hand, for options given twice or empty."""
    def run(ctx: Ctx):
        return ctx.graph("GET", path.format(draft=ctx.draft) + "?" + text)
    return run


def clock(body) -> Callable:
    """A POST to the inspection API's clock (no token: it is not Graph)."""
    def run(ctx: Ctx):
        import requests

        answer = requests.post(ctx.emulator.base_url + "/_emulator/clock", json=body, verify=ctx.emulator.ca_path,
                               timeout=10)
        assert ctx.emulator.backend.clock.offset == 0  # not moved at all
        return answer
    return run


def nested_lambdas(depth: int) -> str:
    """toRecipients/any(r0: toRecipients/any(r1: ... r{depth-1}/emailAddress/address eq 'x'))"""
    inner = f"r{depth - 1}/emailAddress/address eq 'x'"
    for level in reversed(range(depth)):
        inner = f"toRecipients/any(r{level}: {inner})"
    return inner


TOO_DEEP = ("BadRequest", "Recursion depth exceeded allowed limit.")
DATE = "should be in format 'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within valid range."
TWICE = "was specified more than once, but it must be specified at most once."

ROWS = [
    # -- values that reach a header: attachment metadata ---------------------------------------------------
    ("attachment content type with CR LF", attach(contentType="text/html\r\nX-Injected: 1"), 400,
     "ErrorInvalidParameter", "contentType"),
    ("attachment content type ending the headers", attach(contentType="text/html\r\n\r\n<script>alert(1)</script>"),
     400, "ErrorInvalidParameter", "contains a control character or a line break"),
    ("attachment content type with a NUL", attach(contentType="image/png\x00"), 400, "ErrorInvalidParameter",
     "contentType"),
    ("attachment name with a line feed", attach(name="a.txt\nX-Injected: 1"), 400, "ErrorInvalidParameter", "name"),
    ("attachment name with a line separator", attach(name="a\u2028b.txt"), 400, "ErrorInvalidParameter", "name"),
    ("attachment content id with a carriage return", attach(contentId="logo\rX-Injected: 1", isInline=True), 400,
     "ErrorInvalidParameter", "contentId"),
    ("upload session content type with CR LF", upload(contentType="text/html\r\nX-Injected: 1"), 400,
     "ErrorInvalidParameter", "contentType"),
    ("upload session name with CR LF", upload(name="big.bin\r\nX-Injected: 1"), 400, "ErrorInvalidParameter",
     "name"),
    ("upload session content id with a line feed", upload(contentId="c\nX-Injected: 1", isInline=True), 400,
     "ErrorInvalidParameter", "contentId"),
    ("sendMail attachment content type with CR LF", send(attachments=[file_attachment(
        contentType="text/plain\r\nX-Injected: 1")]), 400, "ErrorInvalidParameter", "contentType"),
    ("draft with an attachment name with CR LF", lambda ctx: ctx.graph("POST", "/messages", json=simple(
        attachments=[file_attachment(name="a\r\nX-Injected: 1")])), 400, "ErrorInvalidParameter", "name"),
    # -- custom header names (a name with a line break or a colon forges other headers) ------------------------
    ("custom header name with CR LF", send(internetMessageHeaders=[{"name": "x-a\r\nBcc", "value": "1"}]), 400,
     "InvalidInternetMessageHeader", "printable ASCII"),
    ("custom header name with a colon", send(internetMessageHeaders=[{"name": "x-a:b", "value": "1"}]), 400,
     "InvalidInternetMessageHeader", "other than the colon"),
    ("custom header name with a space", send(internetMessageHeaders=[{"name": "x-a b", "value": "1"}]), 400,
     "InvalidInternetMessageHeader", "printable ASCII"),
    ("draft with a custom header name with a line feed", lambda ctx: ctx.graph("POST", "/messages", json=simple(
        internetMessageHeaders=[{"name": "x-a\nBcc", "value": "1"}])), 400, "InvalidInternetMessageHeader", None),
    # -- the request's own framing and Host ------------------------------------------------------------------
    ("Content-Length that is not a number", post_raw("Content-Length: ten", b"{}"), 400, "BadRequest",
     "Content-Length header 'ten' is not a number"),
    ("negative Content-Length", post_raw("Content-Length: -5", b"{}"), 400, "BadRequest", "is not a number"),
    ("chunk size that is not hexadecimal", post_raw("Transfer-Encoding: chunked", b"zz\r\n{}\r\n0\r\n\r\n"), 400,
     "BadRequest", "chunk size 'zz' is not a hexadecimal number"),
    ("MIME with an address list the email package cannot read", lambda ctx: ctx.graph(
        "POST", "/sendMail", data=base64.b64encode(b"To: a@example.com\r\nMessage-ID: <\r2'5p7e[Gf>\"Tj\r\n\r\nx"),
        headers={"Content-Type": "text/plain"}), 400, "ErrorMimeContentInvalidBase64String",
     "Invalid base64 string for MIME content."),
    ("JSON body nested 200,000 deep", lambda ctx: ctx.graph("POST", "/sendMail", data=b"[" * 200_000, headers={
        "Content-Type": "application/json"}), 400, "BadRequest", "Unable to read JSON request payload."),
    ("Host with a port that is not a number", lambda ctx: raw(ctx, f"GET /v1.0/users/{ctx.emulator.default_sender}"
                                                                   f"/messages HTTP/1.1\r\nHost: 127.0.0.1:4x3\r\n"
                                                                   "Connection: close"),
     403, "HostNotAllowed", None),
    # -- $filter: nesting, dates, range variables ----------------------------------------------------------
    ("400 nested parentheses", listing(**{"$filter": "(" * 400 + "isRead eq true" + ")" * 400}), 400, *TOO_DEEP),
    ("3000 nots", listing(**{"$filter": "not " * 3000 + "isRead eq true"}), 400, *TOO_DEEP),
    ("lambdas nested 150 deep", listing(**{"$filter": nested_lambdas(150)}), 400, *TOO_DEEP),
    ("month 13, day 45", listing(**{"$filter": "receivedDateTime gt 2024-13-45"}), 400, "BadRequest",
     f"The DateTimeOffset text '2024-13-45' {DATE}"),
    ("February 30th", listing(**{"$filter": "receivedDateTime lt 2024-02-30T00:00:00Z"}), 400, "BadRequest", DATE),
    ("hour 25, minute 61", listing(**{"$filter": "sentDateTime ge 2024-01-01T25:61:00Z"}), 400, "BadRequest", DATE),
    ("nested lambdas reusing a variable", listing(**{"$filter": "toRecipients/any(r: ccRecipients/any(r: "
                                                                "r/emailAddress/address eq 'a@b.c'))"}),
     400, "BadRequest", "The range variable 'r' has already been declared."),
    ("range variable that is a string", listing(**{"$filter": "categories/any('c': 'c' eq 'x')"}), 400, "BadRequest",
     "expected a range variable, found ''c''."),
    ("empty $filter", query("$filter="), 400, "BadRequest", "Invalid filter clause: the filter is empty."),
    # -- $top and $skip ---------------------------------------------------------------------------------------
    ("$top of a superscript two", listing(**{"$top": "²"}), 400, "BadRequest",
     "Invalid value '²' for $top query option found. The $top query option requires a non-negative integer value."),
    ("$skip of a circled one", listing(**{"$skip": "①"}), 400, "BadRequest", "Invalid value '①' for $skip"),
    ("$top of Arabic-Indic digits", listing(**{"$top": "٣"}), 400, "BadRequest", "for $top query option"),
    ("$skip of 27 digits", listing(**{"$skip": "9" * 27}), 400, "BadRequest", "for $skip query option found"),
    ("$top one past Int64", listing(**{"$top": str(2**63)}), 400, "BadRequest", "for $top query option found"),
    ("$skip of 5000 digits", listing(**{"$skip": "1" * 5000}), 400, "BadRequest", "for $skip query option found"),
    ("empty $top", query("$top="), 400, "BadRequest", "Invalid value '' for $top query option found."),
    ("empty $skip", query("$skip="), 400, "BadRequest", "Invalid value '' for $skip query option found."),
    ("empty $count", query("$count="), 400, "BadRequest", "takes true or false"),
    # -- an option given twice (OData: at most once, whatever its case) -------------------------------------
    ("$top twice", query("$top=1&$top=5"), 400, "BadRequest", f"Query option '$top' {TWICE}"),
    ("$top and $TOP", query("$top=2&$TOP=5"), 400, "BadRequest", f"Query option '$top' {TWICE}"),
    ("$filter twice", query("$filter=isRead%20eq%20true&$Filter=isRead%20eq%20false"), 400, "BadRequest",
     f"Query option '$filter' {TWICE}"),
    ("$select twice on one message", query("$select=subject&$select=body", "/messages/{draft}"), 400, "BadRequest",
     f"Query option '$select' {TWICE}"),
    ("$top twice on sendMail", lambda ctx: ctx.graph("POST", "/sendMail?$top=1&$top=2", json={"message": simple()}),
     400, "BadRequest", TWICE),
    # -- $search ------------------------------------------------------------------------------------------------
    ("empty $search", query("$search="), 400, "BadRequest", "The $search value is empty."),
    ("$search with an unclosed quote", listing(**{"$search": '"a "b"'}), 400, "BadRequest", "Syntax error"),
    # -- $expand ------------------------------------------------------------------------------------------------
    ("$expand of extended properties without a filter", listing(**{"$expand": "singleValueExtendedProperties"}), 400,
     "BadRequest", "with a $filter on the id"),
    ("$expand filtering on the value", listing(**{"$expand": "singleValueExtendedProperties($filter=value eq 'x')"}),
     400, "BadRequest", "by id only"),
    ("$expand with an unbalanced parenthesis", listing(
        **{"$expand": "singleValueExtendedProperties($filter=(id eq 'String 0x001A')"}), 400, "BadRequest", None),
    ("$expand with a dangling or", listing(
        **{"$expand": "singleValueExtendedProperties($filter=id eq 'String 0x001A' or)"}), 400, "BadRequest",
     "by id only"),
    ("$expand of attachments with a filter", query("$expand=attachments($filter=name eq 'x')", "/messages/{draft}"),
     400, "BadRequest", "Expand attachments with nothing or with $select"),
    # -- the inspection API's clock: forward only, by a number of seconds -----------------------------------
    ("the clock moved back", clock({"advance": -60}), 400, "BadRequest", "the clock only moves forward"),
    ("the clock moved by text", clock({"advance": "tomorrow"}), 400, "BadRequest",
     "'tomorrow' is not a number of seconds"),
    ("the clock moved without a number", clock(["advance", 60]), 400, "BadRequest", 'Give {"advance": seconds}'),
]


def test_the_table_covers_every_family():
    names = [row[0] for row in ROWS]
    assert len(ROWS) >= 45 and len(set(names)) == len(names)


@pytest.fixture
def draft(graph):
    created = graph("POST", "/messages", json=simple(subject="the draft every row may aim at"))
    assert created.status_code == 201
    return created.json()["id"]


def state(emulator, draft: str):
    """What a hostile request must leave as it was: messages per folder, the draft's attachments, open
    upload sessions, and submissions."""
    return (emulator.inspect.folder_counts(), emulator.inspect.attachment_bytes(draft),
            emulator.backend.uploads.for_message(draft), emulator.backend.delivery.sends)


@pytest.mark.parametrize(("case", "action", "status", "code", "text"), ROWS, ids=[row[0] for row in ROWS])
def test_hostile_request_is_refused_and_changes_nothing(graph, graph_emulator, draft, case, action, status, code,
                                                        text):
    before = state(graph_emulator, draft)
    answer = action(Ctx(graph, graph_emulator, draft))
    assert answer.status_code == status, answer.content[:300]
    error = answer.json()["error"]
    assert error["code"] == code
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}  # Graph's error shape
    if text:
        assert text in error["message"]
    assert INJECTED.lower() not in {name.lower() for name in answer.headers}
    assert state(graph_emulator, draft) == before
    assert graph_emulator.backend.delivery.sends == 0
