from __future__ import annotations

import base64
from email import policy
from email.parser import BytesParser

import pytest

from airflow_graph_mail import MessageValidationError, Recipient
from airflow_graph_mail.mail.attachments import Attachment
from airflow_graph_mail.mail.graph_shape import graph_document
from airflow_graph_mail.mail.message import Message


def test_graph_json_shape():
    msg = Message(to="Ann <ann@example.com>", cc=["c@example.com"], subject="S", body="<b>hi</b>",
                  attachments=[("r.csv", b"a,b\n")], importance="HIGH", headers={"x-run": "1"})
    graph = msg.to_graph()
    assert graph["toRecipients"] == [{"emailAddress": {"address": "ann@example.com", "name": "Ann"}}]
    assert graph["ccRecipients"] == [{"emailAddress": {"address": "c@example.com"}}]
    assert graph["body"] == {"contentType": "html", "content": "<b>hi</b>"}
    assert graph["importance"] == "high"
    assert graph["internetMessageHeaders"] == [{"name": "x-run", "value": "1"}]
    (att,) = graph["attachments"]
    assert att["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert att["contentType"] == "text/csv"
    assert base64.b64decode(att["contentBytes"]) == b"a,b\n"
    assert "bccRecipients" not in graph


@pytest.mark.parametrize("kwargs, field", [
    ({"subject": "a\r\nBcc: x@example.com"}, "subject"),
    ({"body_type": "markdown"}, "body_type"),
    ({"importance": "urgent"}, "importance"),
    ({"headers": {"Reply-To": "x@example.com"}}, "headers"),
    ({"headers": {"x-ok": "a\nb"}}, "headers[x-ok]"),
    ({"to": "nobody"}, "to"),
    ({"attachments": ["/no/such/file.csv"]}, "attachments"),
    ({"attachments": [42]}, "attachments"),
])
def test_bad_fields_are_named(kwargs, field):
    with pytest.raises(MessageValidationError) as err:
        Message(**{"to": "a@example.com", **kwargs})
    assert err.value.field == field


def test_attachment_directory_refused(tmp_path):
    with pytest.raises(MessageValidationError, match="not a regular file"):
        Attachment.from_path(tmp_path)


def test_require_recipients():
    with pytest.raises(MessageValidationError, match="no recipients"):
        Message(subject="x").require_recipients()


def test_mime_round_trip(tmp_path):
    report = tmp_path / "report.csv"
    report.write_bytes(b"x,y\n1,2\n")
    msg = Message(to='"Doe, Jane" <jane@example.com>', bcc="hidden@example.com", subject="Überblick",
                  body="plain text", body_type="text", attachments=[report], headers={"x-id": "7"})
    parsed = BytesParser(policy=policy.default).parsebytes(msg.to_mime(sender="me@example.com"))
    assert parsed["Subject"] == "Überblick"
    assert [a.addr_spec for a in parsed["To"].addresses] == ["jane@example.com"]
    assert parsed["To"].addresses[0].display_name == "Doe, Jane"
    assert parsed["Bcc"] == "hidden@example.com"
    assert parsed["x-id"] == "7"
    plain = parsed.get_body(("plain",))
    assert plain is not None and plain.get_content().strip() == "plain text"
    (att,) = list(parsed.iter_attachments())
    assert att.get_filename() == "report.csv" and att.get_payload(decode=True) == b"x,y\n1,2\n"


def test_graph_dict_is_checked_and_copied_in_graphs_spelling():
    pasted = {"subject": "Meet", "toRecipients": [{"emailAddress": {"address": "frannis@contoso.com"}}]}
    assert graph_document(pasted, require_recipients=True)[0] == pasted
    shouted = {"Subject": "Meet", "ToRecipients": [{"EmailAddress": {"Address": "frannis@contoso.com", "NAME": "F"}}],
               "SingleValueExtendedProperties": [{"Id": "String {00020329-0000-0000-C000-000000000046} Name x",
                                                  "Value": "1"}], "Flag": {"flagStatus": "flagged"}}
    assert graph_document(shouted, require_recipients=True)[0] == {
        "subject": "Meet", "toRecipients": [{"emailAddress": {"address": "frannis@contoso.com", "name": "F"}}],
        "singleValueExtendedProperties": [{"id": "String {00020329-0000-0000-C000-000000000046} Name x",
                                           "value": "1"}], "Flag": {"flagStatus": "flagged"}}
    assert "ToRecipients" in shouted  # the caller's dict is left as it was
    _, found = graph_document(shouted, require_recipients=True)  # what was parsed while checking, for the caller
    assert found == {"to": [Recipient("frannis@contoso.com", "F")], "cc": [], "bcc": [], "reply_to": []}
    with pytest.raises(MessageValidationError, match=r"no emailAddress.address"):
        graph_document({"toRecipients": [{"@odata.type": "microsoft.graph.recipient"}]}, require_recipients=True)
    with pytest.raises(MessageValidationError, match="no recipients"):
        graph_document({"subject": "x"}, require_recipients=True)
    assert graph_document({"subject": "x"}, require_recipients=False)[0] == {"subject": "x"}


def test_an_attachment_object_given_as_inline_image_becomes_inline():
    """inline_images={"logo": Attachment} used to keep the Attachment as a plain file (and so refused the body)."""
    logo = Attachment.from_bytes("logo.png", b"\x89PNG")
    message = Message(to="ann@example.com", body='<img src="cid:logo"><img src="cid:seal">',
                      inline_images={"logo": logo, "seal": Attachment.from_bytes("seal.png", b"\x89PNG")})
    assert [(a.name, a.is_inline, a.content_id) for a in message.attachments] == [
        ("logo.png", True, "logo"), ("seal.png", True, "seal")]
    assert logo.is_inline is False  # the caller's object is left as it was
    listed = Message(to="ann@example.com", body='<img src="cid:seal.png">',
                     inline_images=[Attachment.from_bytes("seal.png", b"\x89PNG")])
    assert [(a.is_inline, a.content_id) for a in listed.attachments] == [(True, "seal.png")]


def test_idn_domains_are_written_to_mime_as_a_labels():
    from email.parser import BytesParser

    from airflow_graph_mail.mail.routing import mime_recipients

    raw = Message(to='"Müller, Ann" <ann@bücher.example>', cc="bob@example.com").to_mime()
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [
        ("Müller, Ann", "ann@xn--bcher-kva.example")]
    assert [(h, r.address) for h, r in mime_recipients(raw)] == [
        ("To", "ann@xn--bcher-kva.example"), ("Cc", "bob@example.com")]


def test_base64_with_line_breaks_is_accepted_in_every_shape():
    import base64

    data = bytes(range(256)) * 40
    wrapped = base64.encodebytes(data).decode("ascii")
    assert "\n" in wrapped
    message = Message(to="ann@example.com", attachments=[{"content_base64": wrapped, "name": "blob.bin"}])
    assert message.attachments[0].read() == data
    document, _ = graph_document({"toRecipients": [{"emailAddress": {"address": "ann@example.com"}}], "Attachments": [
        {"@odata.type": "#microsoft.graph.fileAttachment", "Name": "blob.bin", "ContentBytes": wrapped}]},
        require_recipients=True)
    assert base64.b64decode(document["attachments"][0]["contentBytes"], validate=True) == data
