"""The emulator's attachment endpoints and upload sessions, as Microsoft documents them, with plain HTTP."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from graph_http import simple

MB = 1024 * 1024


@pytest.fixture
def draft(graph):
    response = graph("POST", "/messages", json=simple(subject="with attachments"))
    assert response.status_code == 201
    return response.json()["id"]


def open_session(graph, draft, size, **item):
    return graph("POST", f"/messages/{draft}/attachments/createUploadSession",
                 json={"AttachmentItem": {"attachmentType": "file", "name": "big.bin", "size": size, **item}})


def put(http, url, data, start, total, **headers):
    return http.put(url, data=data, headers={"Content-Type": "application/octet-stream",
                                             "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}",
                                             **headers})


def test_upload_session_as_documented(graph, http, draft, graph_emulator):
    """201 with uploadUrl and ["0-"]; each range answers Outlook's ["N"]; the last 201 with Location."""
    data = os.urandom(7 * MB + 12345)
    created = open_session(graph, draft, len(data), contentType="application/pdf", name="Q3 – Bericht.pdf")  # noqa: RUF001 - a non-ASCII name
    assert created.status_code == 201
    session = created.json()
    assert session["nextExpectedRanges"] == ["0-"] and session["expirationDateTime"].endswith("Z")
    assert "/AttachmentSessions('" in session["uploadUrl"] and "authtoken=" in session["uploadUrl"]
    # Outlook's upload host is not Graph's: a client scoping its token to the Graph host sends none here.
    assert session["uploadUrl"].split("/")[2].split(":")[0] != graph_emulator.base_url.split("/")[2].split(":")[0]
    first = put(http, session["uploadUrl"], data[:2 * MB], 0, len(data))
    assert first.status_code == 200 and first.json()["nextExpectedRanges"] == [str(2 * MB)]
    assert http.get(session["uploadUrl"]).json()["nextExpectedRanges"] == [str(2 * MB)]
    second = put(http, session["uploadUrl"], data[2 * MB:6 * MB], 2 * MB, len(data))
    assert second.json()["nextExpectedRanges"] == [str(6 * MB)]
    last = put(http, session["uploadUrl"], data[6 * MB:], 6 * MB, len(data))
    assert last.status_code == 201 and last.content == b""
    assert "/Attachments('" in last.headers["Location"]
    assert graph("POST", f"/messages/{draft}/send").status_code == 202
    (delivered,) = graph_emulator.inspect.messages("ann@example.com")
    (attachment,) = delivered["attachments"]
    assert attachment["name"] == "Q3 – Bericht.pdf" and attachment["contentType"] == "application/pdf"  # noqa: RUF001
    assert attachment["sha256"] == hashlib.sha256(data).hexdigest()
    assert delivered["hasAttachments"] is True


@pytest.mark.parametrize("case, status, code", [
    ("authorization", 401, "InvalidAuthenticationToken"),
    ("gap", 416, "InvalidRange"),
    ("overlap", 416, "InvalidRange"),
    ("over 4 MB", 413, "RequestEntityTooLarge"),
    ("wrong total", 400, "InvalidContentRange"),
    ("bad authtoken", 401, "InvalidAuthenticationToken"),
])
def test_bad_ranges_refused(graph, http, draft, case, status, code):
    data = os.urandom(9 * MB)
    url = open_session(graph, draft, len(data)).json()["uploadUrl"]
    assert put(http, url, data[:MB], 0, len(data)).status_code == 200
    if case == "authorization":
        response = put(http, url, data[MB:2 * MB], MB, len(data), Authorization="Bearer x")
    elif case == "gap":
        response = put(http, url, data[2 * MB:3 * MB], 2 * MB, len(data))
    elif case == "overlap":
        response = put(http, url, data[MB // 2:2 * MB], MB // 2, len(data))
    elif case == "over 4 MB":
        response = put(http, url, data[MB:5 * MB + 1], MB, len(data))
    elif case == "wrong total":
        response = put(http, url, data[MB:2 * MB], MB, len(data) + 1)
    else:
        response = put(http, url.replace("authtoken=", "authtoken=x"), data[MB:2 * MB], MB, len(data))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    # the session is still where it was: nothing was taken from the refused request
    assert http.get(url).json()["nextExpectedRanges"] == [str(MB)]


def test_session_expires(graph, http, draft, graph_emulator):
    graph_emulator.backend.set_limits(upload_session_lifetime=0)
    url = open_session(graph, draft, 3_000_000).json()["uploadUrl"]
    response = put(http, url, b"x" * MB, 0, 3_000_000)
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_cancel_deletes_the_session(graph, http, draft, graph_emulator):
    url = open_session(graph, draft, 3_000_000).json()["uploadUrl"]
    assert put(http, url, b"x" * MB, 0, 3_000_000).status_code == 200
    assert http.delete(url).status_code == 204
    assert put(http, url, b"x" * MB, MB, 3_000_000).status_code == 404
    assert graph_emulator.inspect.full_message(draft)["attachments"] == []


@pytest.mark.parametrize("size, code", [
    (3_000_000 - 1, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"),
    (150 * MB + 1, "ErrorAttachmentSizeExceeded"),
    (36 * MB, "ErrorMessageSizeExceeded"),  # the default limit is Exchange Online's 35 MB
])
def test_session_size_rules(graph, draft, size, code):
    response = open_session(graph, draft, size)
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_message_size_limit_is_configurable(graph, draft, graph_emulator):
    graph_emulator.backend.set_limits(message_size_limit=150 * MB)
    assert open_session(graph, draft, 100 * MB).status_code == 201
    graph_emulator.reset()  # back to 35 MB
    assert graph_emulator.backend.limits.message_size_limit == 35 * MB


def test_upload_budget_answers_429_with_retry_after(graph, http, draft, graph_emulator):
    graph_emulator.backend.set_limits(upload_budget_bytes=5 * MB, upload_budget_window=60)
    data = os.urandom(8 * MB)
    url = open_session(graph, draft, len(data)).json()["uploadUrl"]
    assert put(http, url, data[:4 * MB], 0, len(data)).status_code == 200
    throttled = put(http, url, data[4 * MB:8 * MB], 4 * MB, len(data))
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "ApplicationThrottled"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60


def test_small_attachment_post(graph, draft, graph_emulator):
    content = "é, ü\n".encode()
    response = graph("POST", f"/messages/{draft}/attachments", json={
        "@odata.type": "#microsoft.graph.fileAttachment", "name": "notes €.txt", "contentType": "text/plain",
        "contentBytes": base64.b64encode(content).decode()})
    assert response.status_code == 201 and response.json()["size"] == len(content)
    assert graph_emulator.inspect.attachment_bytes(draft) == {"notes €.txt": content}


def test_attachments_only_on_drafts_and_deleting_a_draft(graph, draft, graph_emulator):
    assert graph("POST", f"/messages/{draft}/send").status_code == 202
    (sent,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
    refused = open_session(graph, sent["id"], 3_000_000)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "ErrorInvalidOperation"
    other = graph("POST", "/messages", json=simple()).json()["id"]
    assert graph("DELETE", f"/messages/{other}").status_code == 204
    assert graph("GET", f"/messages/{other}").status_code == 404


def test_delete_after_submit_keeps_sent_items_empty(graph, graph_emulator):
    """PidTagDeleteAfterSubmit on a draft: delivered, but no copy in Sent Items."""
    body = simple(singleValueExtendedProperties=[{"id": "Boolean 0x0E01", "value": "true"}])
    draft_id = graph("POST", "/messages", json=body).json()["id"]
    assert graph("POST", f"/messages/{draft_id}/send").status_code == 202
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1
    assert graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems") == []


def test_scripted_faults(graph, http, draft, graph_emulator):
    """drop: no answer and nothing stored; drop_after: stored, no answer; a status: refused unprocessed."""
    import requests

    data = os.urandom(3 * MB + 1)
    url = open_session(graph, draft, len(data)).json()["uploadUrl"]
    graph_emulator.faults.add("upload_chunk", "drop")
    with pytest.raises(requests.ConnectionError):
        put(http, url, data[:MB], 0, len(data))
    assert http.get(url).json()["nextExpectedRanges"] == ["0"]
    graph_emulator.faults.add("upload_chunk", "drop_after")
    with pytest.raises(requests.ConnectionError):
        put(http, url, data[:MB], 0, len(data))
    assert http.get(url).json()["nextExpectedRanges"] == [str(MB)]
    graph_emulator.faults.add("upload_chunk", 503, retry_after=2)
    refused = put(http, url, data[MB:2 * MB], MB, len(data))
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    assert [r["status"] for r in graph_emulator.inspect.request_log if r["method"] == "PUT"] == [0, -200, 503]
