"""Each example request on Microsoft's sendMail (v1.0 and beta), create-message and send pages, restated in
our own words and values, sent through GraphMailHook to the emulator; each gets the documented status."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest
from graph_mail_emulator import EmulatorConfig, GraphEmulator, Limits

from airflow_graph_mail import InvalidMimeError, MessageValidationError


def to(*addresses):
    return [{"emailAddress": {"address": a}} for a in addresses]


LUNCH = {"subject": "Lunch at the new place?", "body": {"contentType": "Text", "content": "It opened today."},
         "toRecipients": to("frannis@contoso.com"), "ccRecipients": to("danas@contoso.com")}
HEADERS = {"subject": "Concert on Friday", "body": {"contentType": "HTML", "content": "The band is from Reno."},
           "toRecipients": to("alexw@contoso.com"),
           "internetMessageHeaders": [{"name": "x-custom-header-group-name", "value": "Reno"},
                                      {"name": "x-custom-header-group-id", "value": "RN01"}]}
ATTACHED = {"subject": "Notes", "body": {"contentType": "Text", "content": "See the file."},
            "toRecipients": to("meganb@contoso.com"),
            "attachments": [{"@odata.type": "#microsoft.graph.fileAttachment", "name": "notes.txt",
                             "contentType": "text/plain", "contentBytes": base64.b64encode(b"Hi there!").decode()}]}
FLAGGED = {"subject": "Reply by Friday please", "toRecipients": to("meganb@contoso.com"),
           "flag": {"flagStatus": "flagged",
                    "startDateTime": {"dateTime": "2026-11-23T09:00:00", "timeZone": "Eastern Standard Time"},
                    "dueDateTime": {"dateTime": "2026-11-27T17:00:00", "timeZone": "Eastern Standard Time"}}}
MENTION = {"subject": "Kickoff", "toRecipients": [{"emailAddress": {"name": "Sam B", "address": "samb@contoso.com"}}],
           "mentions": [{"mentioned": {"name": "Dana S", "address": "danas@contoso.com"}}]}


def multipart_mime() -> bytes:
    """Like the documented MIME example: mixed( alternative(text, html), text attachment )."""
    mime = EmailMessage()
    mime["From"] = "Adele V <adelev@contoso.com>"
    mime["To"] = "Alex W <alexw@contoso.com>"
    mime["Subject"] = "MIME test"
    mime.set_content("text body")
    mime.add_alternative("<html><body>html body</body></html>", subtype="html")
    mime.add_attachment(b"attachment text", maintype="text", subtype="plain", filename="test.txt")
    return mime.as_bytes()


@pytest.fixture(autouse=True)
def colleagues(graph_emulator):
    """The people Microsoft's examples write to are users of the tenant (contoso.com is an accepted domain
    there: an address no user has would bounce)."""
    for name in ("frannis", "danas", "alexw", "meganb", "samb", "adelev"):
        graph_emulator.backend.store.add_user(f"{name}@contoso.com")


@pytest.fixture(params=["v1.0", "beta"])
def versioned_hook(request, connect):
    return connect(extra={"api_version": request.param})


def test_send_json_with_save_to_sent_items_false(versioned_hook, graph_emulator):
    versioned_hook.send_mail(LUNCH, save_to_sent_items=False)
    assert graph_emulator.inspect.request_log[-1]["status"] == 202
    assert [m["subject"] for m in graph_emulator.inspect.messages("frannis@contoso.com")] == [LUNCH["subject"]]
    assert len(graph_emulator.inspect.messages("danas@contoso.com")) == 1
    assert graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems") == []


def test_send_with_custom_headers(versioned_hook, graph_emulator):
    versioned_hook.send_mail(HEADERS)
    (got,) = graph_emulator.inspect.messages("alexw@contoso.com")
    assert got["internetMessageHeaders"] == HEADERS["internetMessageHeaders"]
    assert got["body"]["contentType"] == "html"
    assert len(graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")) == 1


def test_send_with_file_attachment(versioned_hook, graph_emulator):
    versioned_hook.send_mail(ATTACHED)
    (got,) = graph_emulator.inspect.messages("meganb@contoso.com")
    assert graph_emulator.inspect.attachment_bytes(got["id"]) == {"notes.txt": b"Hi there!"}


def test_send_mime(versioned_hook, graph_emulator):
    versioned_hook.send_mime(multipart_mime())
    assert graph_emulator.inspect.request_log[-1]["status"] == 202
    (got,) = graph_emulator.inspect.messages("alexw@contoso.com")
    assert got["subject"] == "MIME test" and got["body"]["contentType"] == "html"
    assert graph_emulator.inspect.attachment_bytes(got["id"]) == {"test.txt": b"attachment text"}


def test_malformed_mime_gets_documented_error(versioned_hook, graph_emulator):
    client = versioned_hook.client
    call = client.call(None)
    with pytest.raises(InvalidMimeError) as err:
        client.transport.request(call, "POST", f"/users/{graph_emulator.default_sender}/sendMail", data=b"not*base64!",
                                 content_type="text/plain", expect=(202,))
    assert (err.value.status, err.value.code, err.value.message) == (
        400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
    assert err.value.request_id
    with pytest.raises(InvalidMimeError):
        client.transport.request(call, "POST", f"/users/{graph_emulator.default_sender}/messages",
                                 data=b"not*base64!", content_type="text/plain", expect=(201,))


def test_send_flagged_message(versioned_hook, graph_emulator):
    versioned_hook.send_mail(FLAGGED)
    (got,) = graph_emulator.inspect.messages("meganb@contoso.com")
    assert got["flag"]["flagStatus"] == "flagged"
    assert got["flag"]["dueDateTime"]["dateTime"] == "2026-11-27T17:00:00"


def test_mention_is_beta_only(connect, graph_emulator):
    from airflow_graph_mail import GraphRequestError

    connect(extra={"api_version": "beta"}).send_mail(MENTION)
    assert graph_emulator.inspect.messages("samb@contoso.com")[0]["mentions"][0]["mentioned"]["address"] == \
        "danas@contoso.com"
    with pytest.raises(GraphRequestError, match="mentions"):
        connect().send_mail(MENTION)


def test_create_draft_json(hook, graph_emulator):
    draft = hook.create_draft({"subject": "Last night's game", "importance": "Low",
                               "body": {"contentType": "HTML", "content": "It was <b>great</b>!"},
                               "toRecipients": to("adelev@contoso.com")})
    assert graph_emulator.inspect.request_log[-1]["status"] == 201
    assert draft["isDraft"] is True and draft["importance"] == "low"
    assert draft["bodyPreview"] == "It was great!"  # as the page shows: inline tags leave no space
    assert draft["webLink"] and draft["id"]


def test_create_draft_with_custom_headers(hook, graph_emulator):
    draft = hook.create_draft(HEADERS)
    assert "internetMessageHeaders" not in draft  # not returned by default, as documented
    stored = graph_emulator.inspect.full_message(draft["id"])
    assert stored["internetMessageHeaders"] == HEADERS["internetMessageHeaders"]


def test_create_draft_mime(hook, graph_emulator):
    mime = EmailMessage()
    mime["From"] = "Alex W <alexw@contoso.com>"
    mime["To"] = "Megan B <meganb@contoso.com>"
    mime["Subject"] = "Application: sales associate"
    mime.set_content("Hi Megan, I am interested in the position.")
    draft = hook.create_draft_mime(mime)
    assert draft["isDraft"] is True and draft["body"]["contentType"] == "text"
    assert draft["from"]["emailAddress"]["address"] == "alexw@contoso.com"
    assert draft["toRecipients"] == [{"emailAddress": {"address": "meganb@contoso.com", "name": "Megan B"}}]


def test_send_existing_draft(hook, graph_emulator):
    draft = hook.create_draft(LUNCH)
    hook.send_draft(draft["id"])
    assert graph_emulator.inspect.request_log[-1]["status"] == 202
    assert len(graph_emulator.inspect.messages("frannis@contoso.com")) == 1


def test_old_sdk_example_with_capitalised_parameters_and_204(tmp_path, monkeypatch):
    """The superseded page sends Message/SaveToSentItems and documents 204; the hook accepts 204 too.
    Its sample message has recipients without addresses, which the hook refuses before any request."""
    import json

    from airflow_graph_mail.hooks.graph_mail import GraphMailHook

    with GraphEmulator(EmulatorConfig(tmp_path, limits=Limits(sendmail_status=204))) as emulator:
        emulator.backend.store.add_user("x@contoso.com")
        monkeypatch.setenv("AIRFLOW_CONN_GRAPH_MAIL_DEFAULT", json.dumps(emulator.connection()))
        hook = GraphMailHook()
        sample = {"@odata.type": "#microsoft.graph.message", "id": "ignored", "subject": "Subject value",
                  "toRecipients": [{"@odata.type": "microsoft.graph.recipient"}]}
        with pytest.raises(MessageValidationError, match="toRecipients"):
            hook.send_mail(sample)
        assert emulator.inspect.side_effect_requests == []
        hook.send_mail({**sample, "toRecipients": to("x@contoso.com"), "isRead": True,
                        "createdDateTime": "2016-12-31T23:58:51Z"})
        assert emulator.inspect.request_log[-1]["status"] == 204
        assert len(emulator.inspect.messages("x@contoso.com")) == 1
