"""Bounces: the emulator answers undeliverable recipients with Exchange's non-delivery reports, and
GraphBounceReportOperator ties each to the row it came from."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time

import pytest
import requests
from helpers import dsn, place_report, ref_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_graph_mail.mail.idempotency import PROPERTY_ID, ref_for
from airflow_graph_mail.mail.message import Message
from airflow_graph_mail.mail.ndr import NDR_FILTER, Report, meaning, read_report

BOUNCING = {"c07@example.com": "5.2.2", "c13@example.com": "5.1.1", "c19@example.com": "5.7.1"}
# The deployment's secret ([api] secret_key, the same on every Airflow component), keying every ref.
SECRET = "deployment-secret-for-bounce-refs-7f3a"


def report_of(mime: bytes) -> Report:
    """``read_report`` of what must be a delivery status notification."""
    report = read_report(mime)
    assert report is not None, mime[:2000]
    return report


def xcom(home, task_id: str, key: str):
    with sqlite3.connect(home / "airflow.db") as db:
        (value,) = db.execute("SELECT value FROM xcom WHERE task_id = ? AND key = ?", (task_id, key)).fetchone()
    value = json.loads(value)
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.parametrize("share, fails", [("0.2", False), ("0.1", True)])
def test_a_merge_of_20_rows_of_which_3_bounce(run_dag, graph_emulator, airflow_home, share, fails):
    for address, status in BOUNCING.items():
        graph_emulator.backend.bounces.add(address, status)
    graph_emulator.backend.bounces.delay = 0.5
    result = run_dag("statements_bounce_report", BOUNCE_SETTLE_SECONDS="2", BOUNCE_FAIL_SHARE=share)
    out = result.stdout + result.stderr
    assert (result.returncode != 0) == fails, out[-4000:]
    assert "running trigger in line" in out  # the wait was deferred
    bounces = xcom(airflow_home, "bounce_report", "bounces")
    assert sorted((b["address"], b["status"], b["meaning"]) for b in bounces) == sorted(
        (address, status, meaning(status)) for address, status in BOUNCING.items())
    assert {b["position"] for b in bounces} == {6, 12, 18} and {b["task_id"] for b in bounces} == {"send_statements"}
    outcomes = xcom(airflow_home, "bounce_report", "outcomes")
    assert len(outcomes) == 20
    assert {o["to"][0]: [b["status"] for b in o["bounces"]] for o in outcomes if o["bounces"]} == {
        address: [status] for address, status in BOUNCING.items()}
    if fails:
        assert "3 of 20 mail(s) bounced (15%, above fail_on_bounce=0.1)" in out
    assert len(graph_emulator.inspect.messages("c01@example.com")) == 1
    assert graph_emulator.inspect.messages("c07@example.com") == []


def all_xcom(home) -> str:
    with sqlite3.connect(home / "airflow.db") as db:
        return json.dumps([row[0] for row in db.execute("SELECT value FROM xcom")], default=str)


def deep_report(ref: str, depth: int = 1000) -> bytes:
    """A report for c01 with one more part: multiparts nested ``depth`` deep (the parser gives up)."""
    opening = b"".join(b"--n%d\r\nContent-Type: multipart/mixed; boundary=n%d\r\n\r\n" % (i, i + 1)
                       for i in range(depth))
    closing = b"".join(b"--n%d--\r\n" % i for i in reversed(range(depth + 1)))
    deep = (b"--rep\r\nContent-Type: multipart/mixed; boundary=n0\r\n\r\n" + opening +
            b"--n%d\r\nContent-Type: text/plain\r\n\r\nx\r\n" % depth + closing)
    return dsn(ref, [("c01@example.com", "5.2.2")], extra_parts=deep)


def test_only_real_bounces_count_each_once_and_a_hostile_report_fails_nothing(run_dag, graph_emulator, airflow_home):
    """Issue 23 through Airflow. Row 5's recipient reads the ref on its statement and mails a report naming an
    outsider and row 6's recipient; Exchange delivers c07's report twice; a report nested 1000 deep arrives.
    Only the three real bounces count, each once; the other reports are named in warnings; the refs are keyed
    by the deployment's secret, which no log line or XCom holds."""
    for address, status in BOUNCING.items():
        graph_emulator.backend.bounces.add(address, status)
    graph_emulator.backend.bounces.delay = 0.3
    placed: list[str] = []

    def outsider():
        deadline = time.time() + 120
        while time.time() < deadline and not placed:
            c07 = [m for m in graph_emulator.inspect.messages(graph_emulator.default_sender)
                   if b"rfc822;c07@example.com" in (graph_emulator.inspect.eml(m["id"]) or b"")]
            if graph_emulator.inspect.messages("c06@example.com") and c07:
                ref = ref_of(graph_emulator, "c06@example.com")
                placed.append(place_report(graph_emulator, dsn(ref, [("ceo@example.com", "5.1.1"),
                                                                     ("c07@example.com", "5.1.1")])))
                placed.append(place_report(graph_emulator, graph_emulator.inspect.eml(c07[0]["id"])))
                placed.append(place_report(graph_emulator, deep_report(ref_of(graph_emulator, "c01@example.com"))))
            time.sleep(0.05)

    thread = threading.Thread(target=outsider, daemon=True)
    thread.start()
    result = run_dag("statements_bounce_report", BOUNCE_SETTLE_SECONDS="3", BOUNCE_FAIL_SHARE="0.2",
                     AIRFLOW__API__SECRET_KEY=SECRET)
    thread.join(10)
    out = result.stdout + result.stderr
    assert len(placed) == 3, out[-3000:]
    assert result.returncode == 0, out[-4000:]
    bounces = xcom(airflow_home, "bounce_report", "bounces")
    assert sorted((b["address"], b["status"], b["position"]) for b in bounces) == [
        ("c07@example.com", "5.2.2", 6), ("c13@example.com", "5.1.1", 12), ("c19@example.com", "5.7.1", 18)]
    forged, _, deep = placed
    assert f"({forged!r}) names 'ceo@example.com', 'c07@example.com', which were not recipients of " \
           "send_statements[5]; not counted" in out
    assert "Skipped non-delivery report" in out and f"({deep!r}): its MIME parts are nested too deeply" in out
    (sent,) = [m for m in graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
               if m["toRecipients"][0]["emailAddress"]["address"] == "c01@example.com"]
    (key,) = [p["value"] for p in sent["singleValueExtendedProperties"] if p["id"] == PROPERTY_ID]
    assert ref_of(graph_emulator, "c01@example.com") != hashlib.sha256(key.encode()).hexdigest()[:32]
    assert ref_of(graph_emulator, "c01@example.com") == ref_for(key, SECRET)
    assert SECRET not in out and SECRET not in all_xcom(airflow_home)


def test_the_ndr_is_exchanges_shape(connect, graph_emulator):
    """Class REPORT.IPM.Note.NDR (found with Graph's $filter), multipart/report with a delivery-status part
    per recipient and the original's headers; an unknown address of an accepted domain bounces with 5.1.10."""
    hook = connect(extra={"ref_secret": SECRET})
    graph_emulator.backend.bounces.delay = 0
    graph_emulator.backend.bounces.add("full@contoso.com", "5.2.2")
    ghost = f"ghost@{graph_emulator.entra.tenant_domain}"
    hook.send_mail(Message(to=["ann@example.com", "full@contoso.com", ghost], subject="Numbers"),
                   idempotency_key="numbers-1")
    (ndr,) = hook.list_messages(folder="inbox", filter=NDR_FILTER)
    assert ndr["subject"] == "Undeliverable: Numbers"
    assert ndr["from"]["emailAddress"]["name"] == "Microsoft Outlook"
    mime = hook.get_mime(ndr["id"])
    assert b"multipart/report" in mime and b'report-type="delivery-status"' in mime
    report = report_of(mime)
    assert [(b.address, b.status) for b in report.bounces] == [("full@contoso.com", "5.2.2"), (ghost, "5.1.10")]
    assert "RESOLVER.ADR.RecipientNotFound" in report.bounces[1].diagnostic
    assert report.ref == ref_for("numbers-1", SECRET) and report.original_subject == "Numbers"
    (sent,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
    assert report.original_message_id == sent["internetMessageId"]
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1 and graph_emulator.inspect.messages(ghost) == []
    assert graph_emulator.inspect.messages("full@contoso.com") == []


def test_an_ndr_arrives_after_its_delay(hook, graph_emulator):
    import time

    graph_emulator.backend.bounces.delay = 0.6
    graph_emulator.backend.bounces.add("*@gone.example", "5.1.1")
    hook.send_mail(Message(to="x@gone.example", subject="Late"))
    assert list(hook.list_messages(folder="inbox", filter=NDR_FILTER)) == []
    time.sleep(1.0)
    assert [m["subject"] for m in hook.list_messages(folder="inbox", filter=NDR_FILTER)] == ["Undeliverable: Late"]


def test_read_report_reads_a_report_written_by_hand():
    """RFC 3464's shape written out by hand (not by our emulator): a delayed and a failed recipient, the
    original attached as message/rfc822."""
    raw = (b"From: postmaster@mx.example\r\nTo: airflow@contoso.com\r\nSubject: Undeliverable: Q3\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b1\r\n\r\n"
           b"--b1\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
           b"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns;mx.example\r\n\r\n"
           b"Final-Recipient: rfc822; late@remote.example\r\nAction: delayed\r\nStatus: 4.4.7\r\n\r\n"
           b"Final-Recipient: RFC822; Full@Remote.example\r\nAction: failed\r\nStatus: 5.2.2\r\n"
           b"Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n\r\n"
           b"--b1\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <q3@contoso.com>\r\nSubject: Q3\r\n"
           b"X-Airflow-Graph-Mail-Ref: abc\r\n\r\nbody\r\n--b1--\r\n")
    report = report_of(raw)
    assert [(b.address, b.status, b.meaning) for b in report.bounces] == [
        ("Full@Remote.example", "5.2.2", "recipient's mailbox is full")]
    assert (report.original_message_id, report.ref, report.original_subject) == ("<q3@contoso.com>", "abc", "Q3")
    assert read_report(b"Subject: hello\r\n\r\nnot a report") is None
    assert meaning("5.3.99") == "permanent failure (recipient's mail system)"


def test_the_viewer_links_an_ndr_and_its_original(hook, graph_emulator):
    graph_emulator.backend.bounces.delay = 0
    graph_emulator.backend.bounces.add("full@contoso.com", "5.2.2")
    hook.send_mail(Message(to="full@contoso.com", subject="Linked"), idempotency_key="linked")
    (ndr,) = graph_emulator.inspect.messages(graph_emulator.default_sender)
    (sent,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")

    def page(message_id):
        return requests.get(f"{graph_emulator.base_url}/_viewer/messages/{message_id}", verify=graph_emulator.ca_path,
                            timeout=10).text

    assert f'href="/_viewer/messages/{sent["id"]}">Linked</a>' in page(ndr["id"])
    assert f'href="/_viewer/messages/{ndr["id"]}">Undeliverable: Linked</a>' in page(sent["id"])


def test_value_move_and_folders_as_graph_answers_them(hook, graph_emulator):
    draft = hook.create_draft(Message(to="ann@example.com", subject="Moved"))
    mime = hook.get_mime(draft["id"])
    assert b"Subject: Moved" in mime
    deleted = hook.client.folder_id("deleteditems")
    client, call = hook.client, hook.client.call(None)
    moved = client.transport.request(call, "POST", call.message_path(draft["id"]) + "/move",
                                     json_body={"destinationId": "deleteditems"}, expect=(201,)).json()
    assert moved["id"] == draft["id"]  # asked for immutable ids: it stays
    assert moved["parentFolderId"] == deleted
    assert hook.get_message(draft["id"], select=("isDraft",))["isDraft"] is True


def test_bounce_report_options_are_checked_when_the_dag_is_parsed():
    from airflow_graph_mail import GraphConfigError
    from airflow_graph_mail.operators.bounce_report import GraphBounceReportOperator

    with pytest.raises(GraphConfigError, match="fail_on_bounce: 2 is not True, False or a share"):
        GraphBounceReportOperator(task_id="b", sent_by="x", fail_on_bounce=2)
    with pytest.raises(GraphConfigError, match="settle: must not be negative"):
        GraphBounceReportOperator(task_id="b", sent_by="x", settle=-1)


# -- reading reports (mail/ndr.py, no emulator) ----------------------------------------------------------


def test_the_ref_is_a_keyed_hash_that_no_recipient_can_compute():
    """Whoever sees a ref and can guess the key (dag/task/run/map index/address) still cannot compute a ref
    without the deployment's secret; with it, every process computes the same."""
    key = "statements/send_statements/scheduled__2026-11-20/-1/c05@example.com"
    ref = ref_for(key, SECRET)
    assert ref == ref_for(key, SECRET) and len(ref) == 32 and int(ref, 16) >= 0
    assert ref != hashlib.sha256(key.encode()).hexdigest()[:32]
    assert ref != ref_for(key, SECRET + "x") and ref != ref_for(key + "x", SECRET)
    assert ref_for(key, SECRET.encode()) == ref


@pytest.mark.parametrize("shape", [
    {"status_type": "message/global-delivery-status", "report_type": "global-delivery-status"},
    {"status_encoding": "base64"},
    {"status_encoding": "quoted-printable"},
    {"original_type": "message/rfc822", "original_encoding": "base64"},
    {"original_type": "message/global"},
    {"original_type": "message/global-headers", "original_encoding": "quoted-printable"},
    {"original_type": "text/rfc822-headers; charset=unknown-8bit"},
    {"original_type": "text/rfc822-headers; charset=x-bogus"},
], ids=lambda shape: ",".join(f"{k}={v}" for k, v in shape.items()))
def test_read_report_reads_the_shapes_other_mtas_send(shape):
    report = report_of(dsn("ab12", [("Full@Remote.example", "5.2.2")], **shape))
    assert [(b.address, b.status) for b in report.bounces] == [("Full@Remote.example", "5.2.2")]
    assert report.ref == "ab12" and report.original_message_id == "<original@contoso.com>"
    assert report.problems == ()


def test_read_report_reads_utf8_addresses_of_a_global_report():
    report = report_of(dsn("ab12", [("utf-8;j\\x{FC}rgen@b\\x{FC}cher.example", "5.1.1"),
                                    ("utf-8;anna@m\u00fcller.example", "5.1.1")],
                           status_type="message/global-delivery-status", status_encoding="base64"))
    assert [b.address for b in report.bounces] == ["jürgen@bücher.example", "anna@müller.example"]


def test_a_report_the_parser_gives_up_on_is_unreadable_not_a_crash():
    from airflow_graph_mail import UnreadableReportError

    with pytest.raises(UnreadableReportError, match="its MIME parts are nested too deeply"):
        read_report(deep_report("ab12"))


def test_read_report_reads_what_it_can_and_says_what_it_skipped():
    junk = b"".join(b"--rep\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i for i in range(50))
    report = report_of(dsn("ab12", [(f"u{i}@remote.example", "5.1.1") for i in range(1200)], extra_parts=junk))
    assert len(report.bounces) == 1000
    assert report.problems == ("53 body parts; read the first 20", "1200 recipient blocks; read the first 1000")
    plain = report_of(dsn("ab12", []).replace(b"message/delivery-status", b"text/plain"))
    assert plain.bounces == [] and plain.problems == (
        "no delivery-status part (RFC 3464): a report for people only; read it in Outlook",)


def test_hostile_fields_are_cleaned_and_bounded():
    raw = dsn("ab12", [("c01@example.com", "5.2.2")]).replace(
        b"Diagnostic-Code: smtp; 550 5.2.2 rejected",
        b"Diagnostic-Code: smtp; 550 \x1b[31mred\x00 " + b"x" * 5000).replace(b"Status: 5.2.2", b"Status: 5.2.2 (full)")
    (bounce,) = report_of(raw).bounces
    assert bounce.status == "5.2.2" and bounce.diagnostic.startswith("smtp; 550 [31mred ")
    assert len(bounce.diagnostic) == 500 and bounce.diagnostic.endswith("…")
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in bounce.diagnostic)
    (unknown,) = report_of(raw.replace(b"Status: 5.2.2 (full)", b"Status: full")).bounces
    assert unknown.status == "" and unknown.meaning == "failure"


def test_addresses_compare_without_case_and_with_idna():
    from airflow_graph_mail.mail.ndr import address_key

    assert address_key("JÜRGEN@xn--bcher-kva.example") == address_key("jürgen@Bücher.example")
    assert address_key("C01@Example.COM") == "c01@example.com"
    assert address_key("not an address") == "not an address"


# -- the deployment's secret ---------------------------------------------------------------------------------


def test_a_retry_in_another_process_pushes_the_ref_its_mail_carries(connect, graph_emulator, monkeypatch):
    """[api] secret_key keys the refs, so a retry that finds its mail already sent (a new client, as in another
    worker) pushes the ref the mail carries: the one the bounce report will look for."""
    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", SECRET)
    key = "statements/send_statements/scheduled__2026-11-20/-1/c05@example.com"
    (first,) = connect().send_many([Message(to="c05@example.com", subject="Statement")], keys=[key])
    (again,) = connect().send_many([Message(to="c05@example.com", subject="Statement")], keys=[key], check_first=True)
    assert (first["status"], again["status"]) == ("sent", "already_sent")
    assert first["ref"] == again["ref"] == ref_of(graph_emulator, "c05@example.com") == ref_for(key, SECRET)


@pytest.mark.parametrize("value", ["{SECRET_KEY}", "short"], ids=["Airflow 3's unset placeholder", "too short"])
def test_without_a_usable_secret_refs_are_keyed_per_process_with_a_warning(connect, graph_emulator, monkeypatch,
                                                                           caplog, value):
    """What Airflow 3 shows a task when [api] secret_key is not configured is public text: never a key."""
    from airflow_graph_mail.hooks import graph_mail

    graph_mail._warn_no_ref_secret.cache_clear()
    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", value)
    (sent,) = connect().send_many([Message(to="c05@example.com", subject="Statement")], keys=["k-1"])
    assert sent["ref"] == ref_of(graph_emulator, "c05@example.com") != ref_for("k-1", value)
    state = "not set" if value.startswith("{") else "too short"
    assert f"[api] secret_key is {state}, so this process keys the bounce ref of its mails" in caplog.text


SHAPES = [{}, {"status_encoding": "base64"}, {"status_encoding": "quoted-printable"},
          {"status_type": "message/global-delivery-status", "original_type": "message/global"},
          {"original_type": "message/rfc822", "original_encoding": "base64"},
          {"original_type": "text/rfc822-headers; charset=unknown-8bit"}]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.sampled_from(SHAPES), edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 8), st.binary(
    max_size=40) | st.sampled_from([b"\r\n\r\n", b"--rep\r\n", b"Content-Type: multipart/mixed; boundary=rep\r\n",
                                    b"=?x-bogus?q?=FF?=", b"\\x{110000}", b";", b"\x00", b"\xff\xfe"])), max_size=6))
def test_a_damaged_report_is_read_or_refused_never_a_crash(shape, edits):
    """Any report, cut and spliced anywhere: a Report, None, or UnreadableReportError; fields always clean."""
    from airflow_graph_mail import UnreadableReportError
    from airflow_graph_mail.mail.ndr import MAX_DIAGNOSTIC

    raw = dsn("ab12", [("c01@example.com", "5.2.2"), ("utf-8;j\\x{FC}rgen@example.com", "5.1.1")], **shape)
    for where, cut, text in edits:
        at = int(where * len(raw))
        raw = raw[:at] + text + raw[at + cut:]
    try:
        report = read_report(raw)
    except UnreadableReportError:
        return
    for bounce in report.bounces if report else []:
        for text in (bounce.address, bounce.original_address, bounce.status, bounce.diagnostic):
            assert isinstance(text, str) and not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text)
        assert len(bounce.diagnostic) <= MAX_DIAGNOSTIC
