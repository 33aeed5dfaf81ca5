"""Bad inputs to the bounce report, one row each: non-delivery reports that are forged, repeated or hostile.

Every row sends the same four mails (c03 bounces for real, through the emulator), puts the row's reports
in the sender's Inbox as Exchange files a report arriving from outside, and runs GraphBounceReportOperator
on them. Each row asserts that the task does not fail, that exactly the real bounces and the row's own are
counted (each once), that a report it could not read, or read only in part, is named in a warning by its
message id, and that the secret keying the refs appears in no log line, XCom or return value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest
from helpers import as_context, dsn, place_report, ref_of

from airflow_graph_mail.mail.message import Message

if TYPE_CHECKING:
    from graph_mail_emulator import GraphEmulator

SECRET = "bounce-table-ref-secret-5d1f0c2a"
RECIPIENTS = ["c01@example.com", "c02@example.com", "c03@example.com", "jürgen@bücher.example"]
REAL = {("c03@example.com", "5.1.1")}  # bounced through the emulator in every row


def key(address: str) -> str:
    """The key a merge with key_field="email" gives a row: every part of it is guessable."""
    return f"statements/send_statements/scheduled__2026-11-20T00:00:00+00:00/-1/{address}"


@dataclass
class Ctx:
    emulator: GraphEmulator

    def ref(self, address: str) -> str:
        """The ref a recipient reads on its own copy."""
        return ref_of(self.emulator, address)

    def real_report(self) -> bytes:
        """The NDR Exchange (the emulator) sent for c03, as Graph's $value gives it."""
        (ndr,) = [m for m in self.emulator.inspect.messages(self.emulator.default_sender)
                  if m["subject"].startswith("Undeliverable")]
        return self.emulator.inspect.eml(ndr["id"])


def own(address: str, status: str = "5.2.2", named: str = "", **shape) -> Callable[[Ctx], list[bytes]]:
    """A report carrying the real ref of ``address``'s mail, naming that address (or as ``named`` writes it)."""
    return lambda ctx: [dsn(ctx.ref(address), [(named or address, status)], **shape)]


def naming(ref_address: str, *failed: str) -> Callable[[Ctx], list[bytes]]:
    """A report carrying the real ref of ``ref_address``'s mail (its recipient can read it), naming others."""
    return lambda ctx: [dsn(ctx.ref(ref_address), [(a, "5.1.1") for a in failed])]


def with_original_headers(header_block: bytes, content_type: str = "text/rfc822-headers") -> Callable:
    """The real ref of c01's mail, in an original whose other headers are ``header_block``."""
    def build(ctx):
        good = dsn(ctx.ref("c01@example.com"), [("c01@example.com", "5.2.2")], original_type=content_type)
        return [good.replace(b"Subject: Your statement\r\n", header_block)]
    return build


def nested(depth: int) -> Callable[[Ctx], list[bytes]]:
    """A well-formed report for c01 with one more part: multiparts nested ``depth`` deep."""
    opening = b"".join(b"--n%d\r\nContent-Type: multipart/mixed; boundary=n%d\r\n\r\n" % (i, i + 1)
                       for i in range(depth))
    closing = b"".join(b"--n%d--\r\n" % i for i in reversed(range(depth + 1)))
    deep = (b"--rep\r\nContent-Type: multipart/mixed; boundary=n0\r\n\r\n" + opening +
            b"--n%d\r\nContent-Type: text/plain\r\n\r\nx\r\n" % depth + closing)
    return lambda ctx: [dsn(ctx.ref("c01@example.com"), [("c01@example.com", "5.2.2")], extra_parts=deep)]


def many_parts(count: int) -> Callable[[Ctx], list[bytes]]:
    junk = b"".join(b"--rep\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(count))
    return lambda ctx: [dsn(ctx.ref("c01@example.com"), [("c01@example.com", "5.2.2")], extra_parts=junk)]


def many_blocks(ctx) -> list[bytes]:
    strangers = [(f"x{i}@remote.example", "5.1.1") for i in range(2000)]
    return [dsn(ctx.ref("c01@example.com"), [("c01@example.com", "5.2.2"), *strangers])]


def field(ctx, name: bytes, value: bytes) -> list[bytes]:
    """c01's report with one recipient field written as given."""
    good = dsn(ctx.ref("c01@example.com"), [("c01@example.com", "5.2.2")])
    return [good.replace(name + b": rfc822;c01@example.com", name + b": " + value)]


def status_line(ctx, value: bytes) -> list[bytes]:
    good = dsn(ctx.ref("c01@example.com"), [("c01@example.com", "5.2.2")])
    return [good.replace(b"Status: 5.2.2", b"Status: " + value, 1)]


def guessed_ref(address: str) -> str:
    """The ref as it was computed before: SHA-256 of the key, which anyone can compute."""
    return hashlib.sha256(key(address).encode()).hexdigest()[:32]


def plain_bounce(ctx) -> list[bytes]:
    return [b"From: MAILER-DAEMON@mx.remote.example\r\nSubject: failure notice\r\nContent-Type: text/plain\r\n\r\n"
            b"Sorry, I couldn't deliver to <c01@example.com>.\r\nX-Airflow-Graph-Mail-Ref: " +
            ctx.ref("c01@example.com").encode() + b"\r\n"]


ROWS = [
    # (case, the reports placed, the bounces they must add to REAL, a warning naming the report or None)
    # -- forged refs ------------------------------------------------------------------------------------
    ("forged ref computed from the guessable key", lambda ctx: [dsn(guessed_ref("c01@example.com"),
                                                                      [("c01@example.com", "5.1.1")])], set(),
     None),
    ("a recipient's ref naming an outsider", naming("c01@example.com", "ceo@example.com"), set(),
     "'ceo@example.com', which was not a recipient of send_statements[0]"),
    ("a recipient's ref naming another row's recipient", naming("c01@example.com", "c02@example.com"), set(),
     "'c02@example.com', which was not a recipient of send_statements[0]"),
    ("a recipient's ref naming itself (what a report cannot prove)", own("c01@example.com"),
     {("c01@example.com", "5.2.2")}, None),
    ("a recipient's ref naming a line of 2,000 outsiders", many_blocks, {("c01@example.com", "5.2.2")},
     "2001 recipient blocks; read the first 1000"),
    ("a ref that is no ref of ours", lambda ctx: [dsn("0" * 32, [("c01@example.com", "5.1.1")])], set(), None),
    # -- duplicates --------------------------------------------------------------------------------------
    ("the same report delivered twice", lambda ctx: [ctx.real_report()], set(), None),
    ("a second report for a recipient, in other case", lambda ctx: [ctx.real_report().replace(
        b"rfc822;c03@example.com", b"rfc822;C03@EXAMPLE.COM")], set(), None),
    ("one report listing its recipient twice", lambda ctx: [dsn(ctx.ref("c01@example.com"), [
        ("c01@example.com", "5.2.2"), ("C01@example.com", "5.2.2")])], {("c01@example.com", "5.2.2")}, None),
    # -- charsets and bytes ------------------------------------------------------------------------------
    ("original's headers labelled charset=unknown-8bit (RFC 1428)",
     own("c01@example.com", original_type="text/rfc822-headers; charset=unknown-8bit"),
     {("c01@example.com", "5.2.2")}, None),
    ("original's headers labelled charset=x-bogus", own("c01@example.com",
                                                        original_type="text/rfc822-headers; charset=x-bogus"),
     {("c01@example.com", "5.2.2")}, None),
    ("bytes that are not UTF-8 in the original's headers", with_original_headers(b"Subject: Gr\xfc\xdfe \xff\r\n"),
     {("c01@example.com", "5.2.2")}, None),
    ("encoded-word in an unknown charset in the original's subject",
     with_original_headers(b"Subject: =?x-bogus?q?Gr=FC=DFe?=\r\n"), {("c01@example.com", "5.2.2")}, None),
    ("encoded-word in an unknown charset in an attached original",
     with_original_headers(b"Subject: =?unknown-8bit?b?R3L8w59l?=\r\n", "message/rfc822"),
     {("c01@example.com", "5.2.2")}, None),
    ("a Message-ID that the stdlib's own parser raises on", lambda ctx: [dsn(ctx.ref("c01@example.com"), [
        ("c01@example.com", "5.2.2")]).replace(b"Message-ID: <original@contoso.com>", b"Message-ID: <")],
     {("c01@example.com", "5.2.2")}, None),
    ("NUL and escape characters in the status fields", lambda ctx: status_line(ctx, b"5.2.2\x00\x1b[31m"),
     {("c01@example.com", "5.2.2")}, None),
    # -- structure -----------------------------------------------------------------------------------------
    ("multipart nested 1000 deep", nested(1000), set(), "nested too deeply"),
    ("5,000 body parts", many_parts(5000), {("c01@example.com", "5.2.2")}, "5003 body parts; read the first 20"),
    ("plain-text bounce without a delivery-status part", plain_bounce, set(), "not a delivery status notification"),
    ("empty message", lambda ctx: [b""], set(), "not a delivery status notification"),
    ("binary garbage", lambda ctx: [bytes(range(256)) * 40], set(), "not a delivery status notification"),
    ("report with a binary body and no parts", lambda ctx: [
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=rep\r\n\r\n" + bytes(range(256)) * 40],
     set(), "no delivery-status part"),
    ("report without its closing boundary", lambda ctx: [dsn(ctx.ref("c01@example.com"), [
        ("c01@example.com", "5.2.2")]).removesuffix(b"--rep--\r\n")], {("c01@example.com", "5.2.2")}, None),
    ("report without the original's headers", lambda ctx: [dsn(ctx.ref("c01@example.com"), [
        ("c01@example.com", "5.2.2")]).replace(b"X-Airflow-Graph-Mail-Ref", b"X-Other")], set(), None),
    ("report whose only recipient was delayed", lambda ctx: [dsn(ctx.ref("c01@example.com"), [
        ("c01@example.com", "4.4.7")]).replace(b"Action: failed", b"Action: delayed")], set(), None),
    # -- recipient fields ----------------------------------------------------------------------------------
    ("Final-Recipient in angle brackets without an address type",
     lambda ctx: field(ctx, b"Final-Recipient", b"  <C01@Example.COM> "), {("c01@example.com", "5.2.2")}, None),
    ("Final-Recipient folded into a header injection",
     lambda ctx: field(ctx, b"Final-Recipient", b"rfc822;c01@example.com,\r\n Bcc: eve@evil.example"), set(),
     "'c01@example.com, Bcc: eve@evil.example', which was not a recipient of send_statements[0]"),
    ("Final-Recipient that is empty", lambda ctx: field(ctx, b"Final-Recipient", b""), set(), None),
    ("Status that is not a status code", lambda ctx: status_line(ctx, b"mailbox full"),
     {("c01@example.com", "")}, None),
    # -- other MTAs' shapes ----------------------------------------------------------------------------------
    ("delivery-status part in base64", own("c01@example.com", status_encoding="base64"),
     {("c01@example.com", "5.2.2")}, None),
    ("delivery-status part in quoted-printable", own("c01@example.com", status_encoding="quoted-printable"),
     {("c01@example.com", "5.2.2")}, None),
    ("attached original in base64", own("c01@example.com", original_type="message/rfc822",
                                        original_encoding="base64"), {("c01@example.com", "5.2.2")}, None),
    ("original's headers in base64", own("c01@example.com", original_encoding="base64"),
     {("c01@example.com", "5.2.2")}, None),
    ("global delivery status (RFC 6533), UTF-8 address",
     own("jürgen@bücher.example", named="utf-8;jürgen@bücher.example", status_type="message/global-delivery-status",
         original_type="message/global-headers", report_type="global-delivery-status"),
     {("jürgen@bücher.example", "5.2.2")}, None),
    ("global delivery status in base64, address escaped as \\x{HEX}",
     lambda ctx: [dsn(ctx.ref("jürgen@bücher.example"), [("utf-8;j\\x{FC}rgen@b\\x{FC}cher.example", "5.2.2")],
                      status_type="message/global-delivery-status", status_encoding="base64",
                      original_type="message/global")], {("jürgen@bücher.example", "5.2.2")}, None),
    ("IDN domain as A-labels", lambda ctx: [dsn(ctx.ref("jürgen@bücher.example"), [
        ("rfc822;JÜRGEN@xn--bcher-kva.example", "5.1.1")])], {("jürgen@bücher.example", "5.1.1")}, None),
]


class XComs:
    """The two XCom calls GraphBounceReportOperator makes, over the upstream task's outcomes as it pushed them."""

    def __init__(self, upstream: dict):
        self.upstream = upstream
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids, key):
        return self.upstream.get(task_ids) if key == "outcomes" else None

    def xcom_push(self, key, value):
        self.pushed[key] = json.loads(json.dumps(value))  # what XCom would store


def test_the_table_is_large_enough():
    assert len(ROWS) >= 30 and len({row[0] for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize(("case", "reports", "counted", "warning"), ROWS, ids=[row[0] for row in ROWS])
def test_a_bad_report_never_fails_the_task_nor_counts_a_false_bounce(connect, graph_emulator, caplog, capsys,
                                                                      case, reports, counted, warning):
    from airflow_graph_mail.operators.bounce_report import GraphBounceReportOperator

    started = dt.datetime.now(dt.timezone.utc)
    graph_emulator.backend.bounces.delay = 0
    graph_emulator.backend.bounces.add("c03@example.com", "5.1.1")
    hook = connect(extra={"ref_secret": SECRET})
    outcomes = hook.send_many([Message(to=a, subject="Your statement") for a in RECIPIENTS],
                              keys=[key(a) for a in RECIPIENTS])
    placed = [place_report(graph_emulator, mime) for mime in reports(Ctx(graph_emulator))]
    ti = XComs({"send_statements": outcomes})
    operator = GraphBounceReportOperator(task_id="bounce_report", sent_by="send_statements", settle=0,
                                         fail_on_bounce=False)
    with caplog.at_level(logging.INFO):
        result = operator.execute(as_context({"ti": ti, "dag_run": SimpleNamespace(start_date=started)}))
    assert sorted((b["address"], b["status"]) for b in result["bounces"]) == sorted(REAL | counted)
    assert ti.pushed["bounces"] == result["bounces"]
    by_row = {o["to"][0]: o["bounces"] for o in ti.pushed["outcomes"]}
    assert sorted((a, b["status"]) for a, found in by_row.items() for b in found) == sorted(REAL | counted)
    logged = caplog.text + capsys.readouterr().out  # the operator's own lines go through Airflow's logging
    warnings = [line for line in logged.splitlines() if re.search(r"^WARNING|\[warning\s*\]", line)]
    about_placed = [line for line in warnings if any(i in line for i in placed)]
    if warning is None:
        assert about_placed == []
    else:
        assert any(warning in line for line in about_placed), about_placed or warnings
    assert SECRET not in logged + json.dumps(ti.pushed) + json.dumps(result)


@pytest.mark.parametrize(("value", "text"), [
    ("Sh0rt-S3cret", "extra 'ref_secret' is 12 characters; give at least 16 random ones"),
    (1234567890123456789, "extra 'ref_secret' is int; give text"),
    (["Sh0rt-S3cret", "Sh0rt-S3cret"], "extra 'ref_secret' is list; give text"),
], ids=["too short", "a number", "a list"])
def test_a_ref_secret_that_cannot_key_refs_is_refused_before_any_request(connect, graph_emulator, value, text):
    """The connection's own secret for refs: refs are public, so a short one could be found by trying them all."""
    from airflow_graph_mail import GraphConfigError

    with pytest.raises(GraphConfigError) as raised:
        connect(extra={"ref_secret": value}).send_mail(Message(to="ann@example.com"), idempotency_key="k")
    assert text in str(raised.value) and "Sh0rt-S3cret" not in str(raised.value)
    assert graph_emulator.inspect.side_effect_requests == [] and graph_emulator.backend.delivery.sends == 0


def test_a_bounce_counts_for_every_recipient_of_the_mail_to_cc_and_bcc(connect, graph_emulator, capsys):
    """GraphSendMailOperator's outcome carries the mail's cc and bcc with its ref, so a bounce of any of its
    recipients counts, and nobody else's."""
    from airflow_graph_mail.operators.bounce_report import GraphBounceReportOperator
    from airflow_graph_mail.operators.graph_mail import GraphSendMailOperator

    graph_emulator.backend.bounces.delay = 0
    for address in ("gone@example.com", "full@example.com", "blocked@example.com"):
        graph_emulator.backend.bounces.add(address, "5.1.1")
    connect(extra={"ref_secret": SECRET})
    ti = XComs({})
    GraphSendMailOperator(task_id="send", to="gone@example.com, ann@example.com", cc="full@example.com",
                          bcc="blocked@example.com", subject="Weekly", idempotency_key="weekly-48").execute(
        as_context({"ti": ti}))
    (outcome,) = ti.pushed["outcomes"]
    assert (outcome["cc"], outcome["bcc"], len(outcome["ref"])) == (["full@example.com"], ["blocked@example.com"], 32)
    ref = ref_of(graph_emulator, "ann@example.com")
    assert outcome["ref"] == ref
    place_report(graph_emulator, dsn(ref, [("eve@example.com", "5.1.1")]))  # ann names an outsider
    result = GraphBounceReportOperator(task_id="bounces", sent_by="send", settle=0, fail_on_bounce=False).execute(
        as_context({"ti": XComs({"send": ti.pushed["outcomes"]})}))
    assert sorted(b["address"] for b in result["bounces"]) == ["blocked@example.com", "full@example.com",
                                                                 "gone@example.com"]
    assert "names 'eve@example.com', which was not a recipient of send[0]; not counted" in capsys.readouterr().out
