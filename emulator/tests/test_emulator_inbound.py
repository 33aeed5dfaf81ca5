"""Mail from outside the tenant: given as fields or as an .eml, through Python and the inspection API; what
Exchange adds (Authentication-Results, Received); where it lands; attached mails; hostile input stored as
it came and written back safely; large attachments streamed in and out."""

from __future__ import annotations

import base64
import hashlib
import os
import tracemalloc
from email import message_from_bytes, policy

import jsonschema
import pytest
from graph_http import send
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_emulator_resource import MESSAGE_SCHEMA

USER = "reports-in@contoso.com"
VENDOR = "Vendor Ltd <vendor@northwind.example>"
ORIGINAL = (b"From: Ann <ann@northwind.example>\r\nTo: vendor@northwind.example\r\nSubject: The request\r\n"
            b"Message-ID: <request-1@northwind.example>\r\nDate: Mon, 04 Nov 2024 08:00:00 +0000\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease send the export.\r\n")


def eml(*, subject="Export", attachments=(), extra_headers=b"", to=b"reports-in@contoso.com") -> bytes:
    """A multipart .eml as a vendor's mail client writes it."""
    parts = [b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nattached\r\n"]
    for head, body in attachments:
        parts.append(b"--b\r\n" + head + b"\r\n\r\n" + body + b"\r\n")
    return (b"From: Vendor <vendor@northwind.example>\r\nTo: " + to + b"\r\nSubject: " + subject.encode() +
            b"\r\nMessage-ID: <export-1@northwind.example>\r\nDate: Tue, 05 Nov 2024 09:30:00 +0000\r\n" +
            extra_headers + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
            b"".join(parts) + b"--b--\r\n")


def test_mail_from_outside_is_a_received_message_in_the_mailbox(graph, graph_emulator):
    arrived = graph_emulator.inbound.receive(to=USER, sender=VENDOR, subject="Daily export", body="<p>hi</p>",
                                             body_type="html", attachments=[("data.csv", b"a,b\n1,2\n")])
    assert [(a["mailbox"], a["folder"]) for a in arrived] == [(USER, "inbox")]
    message = graph("GET", f"/messages/{arrived[0]['id']}", user=USER).json()
    jsonschema.validate(message, MESSAGE_SCHEMA)
    assert (message["isRead"], message["isDraft"], message["hasAttachments"]) == (False, False, True)
    assert message["from"] == message["sender"] == {"emailAddress": {"name": "Vendor Ltd",
                                                                      "address": "vendor@northwind.example"}}
    assert message["toRecipients"][0]["emailAddress"]["address"] == USER and message["bccRecipients"] == []
    assert message["internetMessageId"] == arrived[0]["internetMessageId"]
    assert message["body"] == {"contentType": "html", "content": "<p>hi</p>"}
    assert "internetMessageHeaders" not in message  # only when selected, as Graph
    listed = graph("GET", "/mailFolders/inbox/messages", user=USER).json()["value"]
    assert [m["id"] for m in listed] == [arrived[0]["id"]]


@pytest.mark.parametrize("given, verdict", [
    ("pass", "dmarc=pass action=none header.from=northwind.example;compauth=pass reason=100"),
    ("fail", "dmarc=fail action=oreject header.from=northwind.example;compauth=fail reason=000"),
    ("none", "dmarc=none action=none header.from=northwind.example;compauth=fail reason=001"),
    ("spf=softfail smtp.mailfrom=x.example;\r\ncompauth=softpass reason=201",
     "spf=softfail smtp.mailfrom=x.example; compauth=softpass reason=201"),
])
def test_exchange_writes_its_authentication_results_above_the_senders_own(graph, graph_emulator, given, verdict):
    forged = "spf=pass smtp.mailfrom=northwind.example; dmarc=pass header.from=northwind.example; compauth=pass"
    arrived = graph_emulator.inbound.receive(to=USER, sender=VENDOR, subject="s", authentication=given,
                                             headers={"Authentication-Results": forged, "X-Batch": "42"})
    selected = graph("GET", f"/messages/{arrived[0]['id']}", user=USER,
                     params={"$select": "subject,internetMessageHeaders"}).json()
    headers = selected["internetMessageHeaders"]
    assert headers[0]["name"] == "Authentication-Results" and headers[0]["value"].endswith(verdict)
    assert headers[1]["name"] == "Received"
    results = [h["value"] for h in headers if h["name"].lower() == "authentication-results"]
    assert results == [headers[0]["value"], forged]  # the sender's own stays, below Exchange's
    assert {"name": "X-Batch", "value": "42"} in headers
    mime = message_from_bytes(graph("GET", f"/messages/{arrived[0]['id']}/$value", user=USER).content,
                              policy=policy.default)
    assert mime.get_all("Authentication-Results")[0].endswith(verdict)


def test_copies_in_each_tenant_mailbox_and_a_shared_one(graph, graph_emulator):
    graph_emulator.backend.store.add_user("inbound-shared@contoso.com", "Shared inbox")
    arrived = graph_emulator.inbound.receive(to=["inbound-shared@contoso.com", "inbound-bob@contoso.com"], cc=USER,
                                             sender="vendor@northwind.example", subject="To all",
                                             attachments=[("a.bin", os.urandom(1000))])
    assert [a["mailbox"] for a in arrived] == ["inbound-shared@contoso.com", "inbound-bob@contoso.com", USER]
    for entry in arrived:
        answer = graph("GET", f"/messages/{entry['id']}/attachments", user=entry["mailbox"])
        assert answer.status_code == 200 and [a["name"] for a in answer.json()["value"]] == ["a.bin"]
    with graph_emulator.backend.store.reading() as db:
        assert db.execute("SELECT COUNT(*) FROM contents").fetchone()[0] == 1  # the bytes once for three copies


@pytest.mark.parametrize("call, message", [
    ({"to": "someone@gmail.example", "sender": VENDOR}, "not an address of the tenant"),
    ({"to": USER, "sender": "no address"}, "sender 'no address'"),
    ({"to": [], "sender": VENDOR}, "to: give the tenant mailbox"),
    ({"to": USER, "sender": VENDOR, "folder": "Processed"}, "folder 'Processed'"),
    ({"to": USER, "sender": VENDOR, "body_type": "rtf"}, "body_type 'rtf'"),
    ({"to": USER, "sender": VENDOR, "attachments": [("only a name",)]}, "attachments[0]"),
    ({"to": USER, "sender": VENDOR, "attachments": [{"content": b"x"}]}, "attachments[0]: a name is required"),
])
def test_mail_that_cannot_arrive_says_why(graph_emulator, call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        graph_emulator.inbound.receive(**call)
    assert graph_emulator.inspect.messages(USER) == []


def test_the_tenants_size_limit_applies_to_mail_from_outside(graph_emulator, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (2 * 1024 * 1024))
    graph_emulator.backend.set_limits(message_size_limit=1024 * 1024)
    with pytest.raises(ValueError, match="message size limit is 1,048,576"):
        graph_emulator.inbound.receive(to=USER, sender=VENDOR, attachments=[("big.bin", big)])
    graph_emulator.backend.set_limits(message_size_limit=4 * 1024 * 1024)
    assert graph_emulator.inbound.receive(to=USER, sender=VENDOR, attachments=[("big.bin", big)])


def test_a_large_attachment_is_streamed_in_and_out(graph, graph_emulator, tmp_path):
    size = 24 * 1024 * 1024
    data = tmp_path / "export.parquet"
    with data.open("wb") as file:
        for _ in range(size // (1024 * 1024)):
            file.write(os.urandom(1024 * 1024))
    expected = hashlib.sha256(data.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        arrived = graph_emulator.inbound.receive(to=USER, sender=VENDOR, attachments=[("export.parquet", data)])
        _, stored_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        attachments = graph("GET", f"/messages/{arrived[0]['id']}/attachments", user=USER,
                            params={"$select": "id,name,size"}).json()["value"]
        assert attachments == [{"@odata.type": "#microsoft.graph.fileAttachment", "id": attachments[0]["id"],
                                "name": "export.parquet", "size": size}]
        digest = hashlib.sha256()
        with graph("GET", f"/messages/{arrived[0]['id']}/attachments/{attachments[0]['id']}/$value", user=USER,
                   stream=True) as answer:
            assert answer.headers["Content-Length"] == str(size)
            for piece in answer.iter_content(256 * 1024):
                digest.update(piece)
        _, served_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == expected
    assert stored_peak < 12 * 1024 * 1024 and served_peak < 12 * 1024 * 1024, (stored_peak, served_peak)


def test_an_eml_with_an_attached_mail_and_hostile_names(graph, graph_emulator, http):
    raw = eml(attachments=[  # a name with a path and a line break in it (RFC 2231 lets it say so)
        (b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
         b"filename*=utf-8''..%2F..%2Fevil%0D%0AX-Injected%3A%201.bat\r\nContent-Transfer-Encoding: base64",
         base64.b64encode(b"MZ")),
        (b"Content-Type: message/rfc822\r\nContent-Disposition: attachment", ORIGINAL),
        (b'Content-Type: text/csv; name="../../etc/passwd.csv"\r\nContent-Disposition: attachment; '
         b'filename="../../etc/passwd.csv"', b"a,b\r\n"),
    ], extra_headers=b"Authentication-Results: spf=pass; compauth=pass\r\nX-Evil: a\r\n")
    arrived = graph_emulator.inbound.receive_eml(raw, authentication="fail")
    assert [a["mailbox"] for a in arrived] == [USER]
    message_id = arrived[0]["id"]
    listed = graph("GET", f"/messages/{message_id}/attachments", user=USER).json()["value"]
    assert [(a["@odata.type"], a["name"]) for a in listed] == [
        ("#microsoft.graph.fileAttachment", "../../evil\r\nX-Injected: 1.bat"),
        ("#microsoft.graph.itemAttachment", "The request"),
        ("#microsoft.graph.fileAttachment", "../../etc/passwd.csv")]
    item = listed[1]
    assert item["contentType"] is None and "contentBytes" not in item and item["size"] > 0
    inner = graph("GET", f"/messages/{message_id}/attachments/{item['id']}/$value", user=USER)
    assert inner.headers["Content-Type"] == "message/rfc822"
    assert message_from_bytes(inner.content, policy=policy.default)["Message-ID"] == "<request-1@northwind.example>"
    headers = graph("GET", f"/messages/{message_id}", user=USER,
                    params={"$select": "internetMessageHeaders"}).json()["internetMessageHeaders"]
    assert "compauth=fail" in headers[0]["value"]
    assert [h["value"] for h in headers if h["name"] == "Authentication-Results"][1] == "spf=pass; compauth=pass"
    source = graph("GET", f"/messages/{message_id}/$value", user=USER).content
    assert source.startswith(b"Authentication-Results: spf=fail") and source.endswith(raw)  # as it came, under
    page = http.get(f"{graph_emulator.base_url}/_viewer/messages/{message_id}")
    assert page.status_code == 200 and "The request" in page.text
    download = http.get(f"{graph_emulator.base_url}/_viewer/messages/{message_id}/attachments/{listed[0]['id']}")
    assert download.status_code == 200 and "X-Injected" not in download.headers
    assert download.headers["Content-Disposition"].startswith("attachment; filename=")


def test_a_reply_from_outside_joins_the_thread_it_answers(graph, graph_emulator):
    send(graph, "Report", "vendor@northwind.example")
    sent = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")[0]
    answer = graph_emulator.inbound.receive(to=graph_emulator.default_sender, sender=VENDOR, subject="RE: Report",
                                            in_reply_to=sent["internetMessageId"])
    assert answer[0]["conversationId"] == sent["conversationId"]
    raw = eml(subject="RE: Report", to=graph_emulator.default_sender.encode(),
              extra_headers=b"In-Reply-To: " + sent["internetMessageId"].encode() + b"\r\n")
    assert graph_emulator.inbound.receive_eml(raw)[0]["conversationId"] == sent["conversationId"]
    assert graph_emulator.inbound.receive(to=USER, sender=VENDOR)[0]["conversationId"] != sent["conversationId"]


def test_an_eml_that_is_no_mail_or_names_no_tenant_mailbox(graph_emulator):
    for raw, message in ((b"\x00\x01 not a mail", "no header fields"),
                         (eml(to=b"someone@gmail.example"), "give to=")):
        with pytest.raises(ValueError, match=message):
            graph_emulator.inbound.receive_eml(raw)


def test_the_inspection_api_takes_fields_or_an_eml(http, graph, graph_emulator):
    base = graph_emulator.base_url
    answer = http.post(f"{base}/_emulator/inbound", json={
        "to": USER, "from": VENDOR, "subject": "By HTTP", "bodyType": "html", "body": "<b>x</b>",
        "headers": [{"name": "X-Batch", "value": "7"}], "authentication": "fail",
        "attachments": [{"name": "a.csv", "contentType": "text/csv", "contentBytes": base64.b64encode(b"1").decode()},
                        {"@odata.type": "#microsoft.graph.itemAttachment",
                         "eml": base64.b64encode(ORIGINAL).decode()}]})
    assert answer.status_code == 201, answer.text
    entry = answer.json()["value"][0]
    assert entry["mailbox"] == USER and entry["folder"] == "inbox"
    names = [a["name"] for a in graph("GET", f"/messages/{entry['id']}/attachments", user=USER).json()["value"]]
    assert names == ["a.csv", "The request"]
    by_eml = http.post(f"{base}/_emulator/inbound?to=inbound-bob@contoso.com&folder=junkemail", data=eml(),
                       headers={"Content-Type": "message/rfc822"})
    assert by_eml.status_code == 201 and by_eml.json()["value"][0]["folder"] == "junkemail"
    for body, field in (({"to": USER}, "'from' is required"), ({"to": USER, "from": VENDOR, "colour": 1}, "colour"),
                        ({"to": USER, "from": VENDOR, "attachments": [{"name": "a", "contentBytes": "!"}]},
                         "attachments[0].contentBytes"), ({"to": 5, "from": VENDOR}, "'to'"),
                        ({"to": "x@gmail.example", "from": VENDOR}, "not an address of the tenant")):
        refused = http.post(f"{base}/_emulator/inbound", json=body)
        assert refused.status_code == 400 and field in refused.json()["error"]["message"], refused.text
    cross_site = http.post(f"{base}/_emulator/inbound", json={"to": USER, "from": VENDOR},
                           headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    assert http.post(f"{base}/_emulator/delta/expire?status=400").status_code == 204
    assert http.post(f"{base}/_emulator/delta/expire?status=500").status_code == 400


def test_the_inspection_api_takes_mail_larger_than_graphs_4_mb(http, graph_emulator):
    content = os.urandom(5 * 1024 * 1024)
    answer = http.post(f"{graph_emulator.base_url}/_emulator/inbound", json={
        "to": USER, "from": VENDOR, "attachments": [{"name": "big.bin", "contentBytes": base64.b64encode(content)
                                                     .decode()}]})
    assert answer.status_code == 201, answer.text
    assert graph_emulator.inspect.attachment_bytes(answer.json()["value"][0]["id"]) == {"big.bin": content}


PIECES = [b"From: ", b"To: reports-in@contoso.com", b"\r\n", b"\n", b"Subject: =?utf-8?b?", b"--x", b"--x--",
          b"Content-Type: multipart/mixed; boundary=x", b"Content-Type: message/rfc822", b"\xff\xfe", b"\x00",
          b"Content-Disposition: attachment; filename*=utf-8''%FF%0D%0A", b"Content-Transfer-Encoding: base64",
          b"====", b"Message-ID: <a@b>", b"In-Reply-To: <", b": ", b"Date: Mon, 99 Foo 2024", b"<script>",
          b"Content-Type: text/html; charset=klingon", b"X-A: b"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=40))
def test_whatever_arrives_is_refused_clearly_or_read_back_safely(graph, http, graph_emulator, pieces):
    """Bytes from a stranger: refused with a ValueError, or stored, and then every read of them (Graph's
    JSON, its MIME, attachments, the viewer) answers 200, never a 500."""
    raw = b"To: reports-in@contoso.com\r\n" + b"".join(pieces)
    try:
        arrived = graph_emulator.inbound.receive_eml(raw)
    except ValueError:
        return
    message_id = arrived[0]["id"]
    reads = [f"/messages/{message_id}", f"/messages/{message_id}/$value", f"/messages/{message_id}/attachments"]
    for path in reads:
        assert graph("GET", path, user=USER).status_code == 200, path
    for attachment in graph("GET", f"/messages/{message_id}/attachments", user=USER).json()["value"]:
        for tail in ("", "/$value"):
            assert graph("GET", f"/messages/{message_id}/attachments/{attachment['id']}{tail}", user=USER).status_code \
                == 200
    for path in (f"/_viewer/messages/{message_id}", f"/_viewer/messages/{message_id}/body",
                 f"/_emulator/messages/{message_id}.eml"):
        assert http.get(graph_emulator.base_url + path).status_code == 200, path
    assert graph("POST", f"/messages/{message_id}/createReply", user=USER).status_code == 201
