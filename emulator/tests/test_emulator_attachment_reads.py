"""Reading attachments as Microsoft's "List attachments" and "Get attachment" pages show them: the
fileAttachment and itemAttachment shapes, $select, the attached mail expanded, $value, and
$expand=attachments on messages."""

from __future__ import annotations

import base64

import jsonschema
import pytest

USER = "reports-in@contoso.com"
ATTACHED = (b"From: Ann <ann@northwind.example>\r\nTo: vendor@northwind.example\r\nSubject: The request\r\n"
            b"Message-ID: <request-1@northwind.example>\r\nDate: Mon, 04 Nov 2024 08:00:00 +0000\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nPlease send the export.\r\n")
STAMP = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"}
# microsoft.graph.fileAttachment and itemAttachment as Graph's metadata defines them (attachment's
# properties, and contentBytes, contentId, contentLocation on the file kind); nothing else may appear.
FILE = {"type": "object", "additionalProperties": False, "required": ["@odata.type", "id"], "properties": {
    "@odata.type": {"const": "#microsoft.graph.fileAttachment"}, "@odata.context": {"type": "string"},
    "id": {"type": "string"}, "lastModifiedDateTime": STAMP, "name": {"type": ["string", "null"]},
    "contentType": {"type": ["string", "null"]}, "size": {"type": "integer"}, "isInline": {"type": "boolean"},
    "contentId": {"type": ["string", "null"]}, "contentLocation": {"type": ["string", "null"]},
    "contentBytes": {"type": "string", "contentEncoding": "base64"}}}
ITEM = {"type": "object", "additionalProperties": False, "required": ["@odata.type", "id"], "properties": {
    "@odata.type": {"const": "#microsoft.graph.itemAttachment"}, "@odata.context": {"type": "string"},
    "id": {"type": "string"}, "lastModifiedDateTime": STAMP, "name": {"type": ["string", "null"]},
    "contentType": {"type": "null"}, "size": {"type": "integer"}, "isInline": {"type": "boolean"},
    "item@odata.context": {"type": "string"}, "item": {"type": "object"}}}
ATTACHMENT = {"oneOf": [FILE, ITEM]}


@pytest.fixture
def message(graph_emulator):
    """A received mail with a file, an inline image and an attached mail: its id."""
    return graph_emulator.inbound.receive(to=USER, sender="vendor@northwind.example", subject="Export", attachments=[
        ("data.csv", b"a,b\n1,2\n"),
        {"name": "logo.png", "content": b"\x89PNG", "contentType": "image/png", "isInline": True, "contentId": "logo"},
        {"item": ATTACHED}])[0]["id"]


def test_the_collection_with_and_without_its_bytes(graph, message):
    listed = graph("GET", f"/messages/{message}/attachments", user=USER).json()
    assert listed["@odata.context"].endswith(f"/messages('{message}')/attachments")
    for attachment in listed["value"]:
        jsonschema.validate(attachment, ATTACHMENT)
    data, logo, item = listed["value"]
    assert (data["name"], base64.b64decode(data["contentBytes"]), data["contentType"]) == \
        ("data.csv", b"a,b\n1,2\n", "text/csv")
    assert (logo["isInline"], logo["contentId"]) == (True, "logo")
    assert (item["name"], item["contentType"], "contentBytes" in item) == ("The request", None, False)
    slim = graph("GET", f"/messages/{message}/attachments", user=USER,
                 params={"$select": "name,size,isInline"}).json()["value"]
    assert [set(a) for a in slim] == [{"@odata.type", "id", "name", "size", "isInline"}] * 3
    assert graph("GET", f"/messages/{message}/attachments", user=USER,
                 params={"$select": "colour"}).status_code == 400


def test_one_attachment_and_the_attached_mail_expanded(graph, message):
    data_id, _, item_id = (a["id"] for a in graph("GET", f"/messages/{message}/attachments",
                                                   user=USER).json()["value"])
    data = graph("GET", f"/messages/{message}/attachments/{data_id}", user=USER).json()
    jsonschema.validate(data, FILE)
    assert data["@odata.context"].endswith("/attachments/$entity")
    item = graph("GET", f"/messages/{message}/attachments/{item_id}", user=USER,
                 params={"$expand": "microsoft.graph.itemattachment/item"}).json()
    jsonschema.validate(item, ITEM)
    assert item["item"]["@odata.type"] == "#microsoft.graph.message" and item["item"]["id"] == ""
    assert item["item"]["subject"] == "The request"
    assert item["item"]["internetMessageId"] == "<request-1@northwind.example>"
    assert item["item"]["from"]["emailAddress"] == {"name": "Ann", "address": "ann@northwind.example"}
    assert "export" in item["item"]["body"]["content"]
    assert graph("GET", f"/messages/{message}/attachments/{item_id}", user=USER,
                 params={"$expand": "item"}).status_code == 400
    missing = graph("GET", f"/messages/{message}/attachments/AAMkAGAttNothingHereAtAll", user=USER)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ErrorItemNotFound"


def test_raw_contents_of_a_file_and_of_an_attached_mail(graph, message):
    data_id, logo_id, item_id = (a["id"] for a in graph("GET", f"/messages/{message}/attachments",
                                                         user=USER).json()["value"])
    data = graph("GET", f"/messages/{message}/attachments/{data_id}/$value", user=USER)
    assert (data.status_code, data.content, data.headers["Content-Type"]) == (200, b"a,b\n1,2\n", "text/csv")
    assert graph("GET", f"/messages/{message}/attachments/{logo_id}/$value", user=USER).content == b"\x89PNG"
    mail = graph("GET", f"/messages/{message}/attachments/{item_id}/$value", user=USER)
    assert mail.headers["Content-Type"] == "message/rfc822" and b"Subject: The request" in mail.content


def test_a_stored_content_type_never_reaches_a_header_unchecked(graph, graph_emulator):
    arrived = graph_emulator.inbound.receive(to=USER, sender="v@northwind.example", attachments=[
        {"name": "x", "content": b"x", "contentType": "text/html\r\nSet-Cookie: a=b"}])[0]["id"]
    attachment = graph("GET", f"/messages/{arrived}/attachments", user=USER).json()["value"][0]
    raw = graph("GET", f"/messages/{arrived}/attachments/{attachment['id']}/$value", user=USER)
    assert raw.status_code == 200 and raw.headers["Content-Type"] == "application/octet-stream"
    assert "Set-Cookie" not in raw.headers


def test_expand_attachments_on_messages(graph, message):
    one = graph("GET", f"/messages/{message}", user=USER, params={"$expand": "attachments($select=name,size)",
                                                                  "$select": "subject"}).json()
    assert [(a["name"], set(a)) for a in one["attachments"]] == [
        (name, {"@odata.type", "id", "name", "size"}) for name in ("data.csv", "logo.png", "The request")]
    listed = graph("GET", "/mailFolders/inbox/messages", user=USER, params={"$expand": "attachments"}).json()
    assert base64.b64decode(listed["value"][0]["attachments"][0]["contentBytes"]) == b"a,b\n1,2\n"
    for bad in ("attachments($select=colour)", "attachments($top=1)"):
        assert graph("GET", f"/messages/{message}", user=USER, params={"$expand": bad}).status_code == 400


def test_reading_attachments_needs_a_read_role(graph, http, graph_emulator, message):
    from graph_http import get_token

    app = graph_emulator.entra.add_app(secret="send-only-secret", roles=("Mail.Send",))
    token = get_token(http, graph_emulator, app.client_id, "send-only-secret").json()["access_token"]
    for path in ("/attachments", "/attachments/AAMkAGAttNothingHereAtAll/$value"):
        answer = graph("GET", f"/messages/{message}{path}", user=USER, token_override=token)
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "ErrorAccessDenied"
