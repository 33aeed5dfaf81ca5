"""Answering a received mail as Microsoft's pages describe it: createReply, createReplyAll and createForward
(201 drafts: RE:/FW:, recipients from the original, the conversation kept, the original quoted, a comment),
reply, replyAll and forward (202: sent at once), and a reply draft with a large attachment sent in the
thread."""

from __future__ import annotations

import base64
import os
from email import message_from_bytes, policy

import jsonschema
import pytest
from graph_http import person, upload
from test_emulator_resource import MESSAGE_SCHEMA

VENDOR = "vendor@northwind.example"
ORIGINAL = (b"From: Ann <ann@northwind.example>\r\nSubject: The request\r\n\r\nPlease send it.\r\n")


@pytest.fixture
def me(graph_emulator):
    return graph_emulator.default_sender


@pytest.fixture
def received(graph_emulator, me):
    """A vendor's mail to us, Cc a colleague and a partner, with a file and an attached mail: its stored form."""
    arrived = graph_emulator.inbound.receive(
        to=[me], cc=["inbound-bob@contoso.com"], sender="Vendor <vendor@northwind.example>", subject="Export",
        body="Rows:\n<3>", attachments=[("data.csv", b"a,b\n"), {"item": ORIGINAL}],
)
    return graph_emulator.inspect.full_message(arrived[0]["id"])


def test_create_reply_is_a_draft_in_the_thread(graph, graph_emulator, received, me):
    answer = graph("POST", f"/messages/{received['id']}/createReply", json={"comment": "<p>Received, 2 rows</p>"})
    assert answer.status_code == 201, answer.text
    draft = answer.json()
    jsonschema.validate(draft, MESSAGE_SCHEMA)
    assert draft["@odata.context"].endswith("/messages/$entity")
    assert (draft["isDraft"], draft["subject"], draft["conversationId"]) == (True, "RE: Export",
                                                                              received["conversationId"])
    assert draft["toRecipients"] == [{"emailAddress": {"name": "Vendor", "address": VENDOR}}]
    assert draft["ccRecipients"] == [] and draft["hasAttachments"] is False
    body = draft["body"]
    assert body["contentType"] == "html"
    assert body["content"].index("<p>Received, 2 rows</p>") < body["content"].index("<b>From:</b> Vendor &lt;")
    assert "<b>Subject:</b> Export" in body["content"] and "Rows:<br>\r\n&lt;3&gt;" in body["content"]
    assert graph_emulator.inspect.full_message(draft["id"])["folder"] == "drafts"
    assert graph("POST", f"/messages/{draft['id']}/send").status_code == 202
    delivered = graph_emulator.inspect.messages(VENDOR)
    assert [m["subject"] for m in delivered] == ["RE: Export"]
    mime = message_from_bytes(graph_emulator.inspect.eml(delivered[0]["id"]), policy=policy.default)
    assert mime["In-Reply-To"] == received["internetMessageId"] == mime["References"]
    sent = graph_emulator.inspect.messages(me, "sentitems")
    assert [m["conversationId"] for m in sent] == [received["conversationId"]]


def test_reply_goes_to_reply_to_and_reply_all_to_everyone_but_me(graph, graph_emulator, me):
    arrived = graph_emulator.inbound.receive(to=[me, "inbound-bob@contoso.com"], cc=["inbound-carol@contoso.com", me],
                                             sender=VENDOR, reply_to="orders@northwind.example", subject="RE: Q3")
    message_id = next(a["id"] for a in arrived if a["mailbox"] == me)
    reply = graph("POST", f"/messages/{message_id}/createReply").json()
    assert [r["emailAddress"]["address"] for r in reply["toRecipients"]] == ["orders@northwind.example"]
    assert reply["subject"] == "RE: Q3"  # not "RE: RE: Q3"
    everyone = graph("POST", f"/messages/{message_id}/createReplyAll", json={"comment": ""}).json()
    assert [r["emailAddress"]["address"] for r in everyone["toRecipients"]] == ["orders@northwind.example",
                                                                                "inbound-bob@contoso.com"]
    assert [r["emailAddress"]["address"] for r in everyone["ccRecipients"]] == ["inbound-carol@contoso.com"]


def test_create_forward_carries_the_attachments(graph, graph_emulator, received):
    answer = graph("POST", f"/messages/{received['id']}/createForward", json={
        "comment": "FYI", "toRecipients": [person("dana@partner.example")]})
    assert answer.status_code == 201, answer.text
    draft = answer.json()
    assert (draft["subject"], draft["hasAttachments"]) == ("FW: Export", True)
    assert [r["emailAddress"]["address"] for r in draft["toRecipients"]] == ["dana@partner.example"]
    attachments = graph("GET", f"/messages/{draft['id']}/attachments").json()["value"]
    assert [(a["@odata.type"], a["name"]) for a in attachments] == [
        ("#microsoft.graph.fileAttachment", "data.csv"), ("#microsoft.graph.itemAttachment", "The request")]
    in_message = graph("POST", f"/messages/{received['id']}/createForward", json={
        "message": {"toRecipients": [person("erin@contoso.com")]}}).json()
    assert [r["emailAddress"]["address"] for r in in_message["toRecipients"]] == ["erin@contoso.com"]
    assert graph("POST", f"/messages/{received['id']}/createForward").status_code == 201  # recipients later


def test_reply_reply_all_and_forward_send_at_once(graph, graph_emulator, received, me):
    assert graph("POST", f"/messages/{received['id']}/reply", json={"comment": "Thanks"}).status_code == 202
    assert graph("POST", f"/messages/{received['id']}/replyAll",
                 json={"message": {"body": {"contentType": "text", "content": "All: thanks"}}}).status_code == 202
    forward = graph("POST", f"/messages/{received['id']}/microsoft.graph.forward",
                    json={"comment": "See below", "toRecipients": [person("dana@partner.example")]})
    assert forward.status_code == 202 and forward.content == b""
    sent = {m["subject"]: m for m in graph_emulator.inspect.messages(me, "sentitems")}
    assert set(sent) == {"RE: Export", "FW: Export"}
    assert graph_emulator.inspect.messages(me, "drafts") == []
    assert [m["subject"] for m in graph_emulator.inspect.messages(VENDOR)] == ["RE: Export", "RE: Export"]
    bob = graph_emulator.inspect.messages("inbound-bob@contoso.com")
    assert [m["subject"] for m in bob] == ["RE: Export", "Export"]
    forwarded = graph_emulator.inspect.messages("dana@partner.example")[0]
    assert [a["name"] for a in forwarded["attachments"]] == ["data.csv", "The request"]
    assert all(m["conversationId"] == received["conversationId"] for m in sent.values())


@pytest.mark.parametrize("path, body, code", [
    ("reply", {"comment": "x", "message": {"body": {"contentType": "text", "content": "y"}}}, "ErrorInvalidParameter"),
    ("createReply", {"comment": "x", "message": {"body": {"contentType": "html", "content": "y"}}},
     "ErrorInvalidParameter"),
    ("forward", {"comment": "x"}, "ErrorInvalidRecipients"),
    ("forward", {"toRecipients": [person("a@b.example")], "message": {"toRecipients": [person("c@d.example")]}},
     "ErrorInvalidParameter"),
    ("reply", {"toRecipients": [person("a@b.example")]}, "RequestBodyRead"),
    ("createReply", {"colour": "blue"}, "RequestBodyRead"),
    ("createReply", {"comment": 5}, "RequestBodyRead"),
    ("createReply", ["comment"], "ErrorInvalidParameter"),
    ("forward", {"toRecipients": "a@b.example"}, "RequestBodyRead"),
])
def test_what_graph_refuses(graph, graph_emulator, received, me, path, body, code):
    answer = graph("POST", f"/messages/{received['id']}/{path}", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == code, answer.text
    assert graph_emulator.inspect.messages(me, "drafts") == []


def test_a_reply_draft_takes_a_large_attachment_and_is_sent_in_the_thread(graph, http, graph_emulator, received):
    draft = graph("POST", f"/messages/{received['id']}/createReply", json={
        "comment": "Report attached", "message": {"attachments": [{
            "@odata.type": "#microsoft.graph.fileAttachment", "name": "summary.txt",
            "contentBytes": base64.b64encode(b"2 rows").decode()}]}}).json()
    data = os.urandom(5 * 1024 * 1024)
    upload(graph, http, draft["id"], "report.xlsx", data)
    assert graph("POST", f"/messages/{draft['id']}/send").status_code == 202
    delivered = graph_emulator.inspect.messages(VENDOR)[0]
    assert delivered["conversationId"] != "" and delivered["subject"] == "RE: Export"
    assert graph_emulator.inspect.attachment_bytes(delivered["id"]) == {"summary.txt": b"2 rows", "report.xlsx": data}


def test_a_reply_in_mime(graph, graph_emulator, received):
    mime = (b"To: orders@northwind.example\r\nSubject: RE: Export (MIME)\r\nContent-Type: text/plain\r\n\r\n"
            b"Received.\r\n")
    answer = graph("POST", f"/messages/{received['id']}/createReply", data=base64.b64encode(mime),
                   headers={"Content-Type": "text/plain"})
    assert answer.status_code == 201, answer.text
    draft = answer.json()
    assert draft["subject"] == "RE: Export (MIME)" and draft["conversationId"] == received["conversationId"]
    assert [r["emailAddress"]["address"] for r in draft["toRecipients"]] == ["orders@northwind.example"]
    bad = graph("POST", f"/messages/{received['id']}/createReply", data=b"not base64!",
                headers={"Content-Type": "text/plain"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "ErrorMimeContentInvalidBase64String"


def test_a_hostile_original_is_quoted_safely(graph, graph_emulator, me):
    arrived = graph_emulator.inbound.receive(to=me, sender='"<script>x</script>" <evil@northwind.example>',
                                             subject="Hi\r\nBcc: victim@contoso.com", body="<b>bold</b>")
    draft = graph("POST", f"/messages/{arrived[0]['id']}/createReply").json()
    assert "<script>" not in draft["body"]["content"] and "&lt;script&gt;" in draft["body"]["content"]
    assert draft["bccRecipients"] == []
    assert graph("POST", f"/messages/{draft['id']}/send").status_code == 202
    eml = graph_emulator.inspect.eml(graph_emulator.inspect.messages("evil@northwind.example")[0]["id"])
    header = eml.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in header and b"RE: Hi  Bcc: victim" in header  # the line break made a space


def test_answering_needs_its_roles(graph, http, graph_emulator, received):
    from graph_http import get_token

    def token(*roles):
        app = graph_emulator.entra.add_app(secret=f"secret-{'-'.join(roles)}", roles=roles)
        return get_token(http, graph_emulator, app.client_id, f"secret-{'-'.join(roles)}").json()["access_token"]

    read_write, send_only = token("Mail.ReadWrite"), token("Mail.Send")
    assert graph("POST", f"/messages/{received['id']}/createReply", token_override=send_only).status_code == 403
    assert graph("POST", f"/messages/{received['id']}/reply", token_override=read_write).status_code == 403
    assert graph("POST", f"/messages/{received['id']}/createReply", token_override=read_write).status_code == 201
