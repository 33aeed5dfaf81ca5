"""The mailbox viewer over HTTPS, without a browser: pages, search, clearing, downloads and the policies
that keep a mail's HTML in its box. (test_viewer_browser.py looks at the same pages in Chromium.)"""

from __future__ import annotations

import base64
import html
import os
import re
from email.message import EmailMessage

import pytest
from graph_http import IDEMPOTENCY_PROPERTY, file, keyed, person, send, upload

from graph_mail_emulator.backend.text import html_to_text
from graph_mail_emulator.faces.viewer import pages


def subjects(page: str) -> list[str]:
    return [html.unescape(s) for s in re.findall(r'<td class="subject"><a href="[^"]+">([^<]*)</a>', page)]


def copies(page: str) -> list[str]:
    """The labels of the copies listed inside the rows of the "All mailboxes" list."""
    return [html.unescape(s) for s in re.findall(r'<li><a class="[^"]*" href="[^"]+" title="[^"]+">([^<]*)</a>', page)]


@pytest.fixture
def viewer(http, graph_emulator):
    """viewer(path, **params) -> the page's text (asserting 200)."""
    def get(path: str = "/", **params):
        answer = http.get(graph_emulator.base_url + path, params=params)
        assert answer.status_code == 200, answer.text[:500]
        return answer.text

    return get


def test_search_by_subject_recipient_and_idempotency_key(graph, viewer):
    send(graph, "Invoices for März", [person("zoe@example.com", "Zoë Quinn")], "a", **keyed("billing/run-7/0"))
    send(graph, "Team lunch", "bob@example.com", "b", ccRecipients=[person("carol@example.com")],
         **keyed("social/run-2/0"))
    found = viewer(q="MÄRZ")
    assert subjects(found) == ["Invoices for März"]  # one row: Zoë's Inbox and Sent Items copies inside
    assert copies(found) == ["airflow@contoso.com · Sent Items", "zoe@example.com"]
    assert subjects(viewer(q="zoë")) == ["Invoices for März"]  # a display name, any case
    lunch = viewer(q="carol@example")  # a Cc recipient: bob, carol, Sent Items
    assert subjects(lunch) == ["Team lunch"] and len(copies(lunch)) == 3
    assert subjects(viewer(q="billing/run-7")) == ["Invoices for März"]  # the idempotency key
    assert subjects(viewer(q="billing", mailbox="zoe@example.com")) == ["Invoices for März"]
    nothing = viewer(q="no such thing")
    assert subjects(nothing) == [] and "Nothing matches" in nothing
    page = viewer(mailbox="airflow@contoso.com", folder="sentitems")
    assert subjects(page) == ["Team lunch", "Invoices for März"]  # newest first
    assert "airflow@contoso.com · Sent Items" in page


def test_list_columns_and_limits(graph, viewer, monkeypatch):
    send(graph, "With files", "ann@example.com", '<img src="cid:logo">', "html", attachments=[
        file("a.csv", b"x" * 2048, "text/csv"), file("logo.png", b"\x89PNG" + b"0" * 60, "image/png", cid="logo")])
    page = viewer(mailbox="ann@example.com", folder="inbox")
    row = re.search(r'<tr class="unread" data-message-id="[^"]+">(.*?)</tr>', page, re.S).group(1)
    assert '<div class="from">airflow &lt;airflow@contoso.com&gt;</div>' in row
    assert '<div class="to">ann@example.com</div>' in row
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">', row)
    assert '<td class="num size">2.1 KB</td>' in row  # 10 + 20 + 2,048 + 64 bytes
    assert re.search(r'<td class="num attachments">1 <span class="muted">\+ 1 inline</span></td>', row)
    for n in range(3):
        send(graph, f"Note {n}", "ann@example.com")
    monkeypatch.setattr(pages, "PAGE_LIMIT", 2)
    page = viewer(mailbox="ann@example.com")
    assert subjects(page) == ["Note 2", "Note 1"] and "4 messages; the newest 2 are shown" in page
    assert "There is no mailbox nobody@example.com" in viewer(mailbox="nobody@example.com")


def test_message_page_shows_envelope_headers_and_properties(graph, graph_emulator, viewer):
    answer = graph("POST", "/sendMail", json={"message": {
        "subject": "Flagged & important", "importance": "high", "flag": {"flagStatus": "flagged"},
        "body": {"contentType": "text", "content": "plain words\nsecond line"},
        "toRecipients": [{"emailAddress": {"address": "ann@example.com", "name": "Ann"}}],
        "bccRecipients": [{"emailAddress": {"address": "audit@example.com"}}],
        "replyTo": [{"emailAddress": {"address": "replies@example.com"}}],
        "internetMessageHeaders": [{"name": "x-run-id", "value": "manual__1"}]}})
    assert answer.status_code == 202, answer.text
    (sent,) = graph_emulator.inspect.messages(graph_emulator.default_sender, "sentitems")
    page = viewer(f"/_viewer/messages/{sent['id']}")
    assert "<h1 class=\"subject\">Flagged &amp; important</h1>" in page
    assert '<td class="recipients-bcc">audit@example.com</td>' in page  # the sender's copy keeps Bcc
    assert '<td class="recipients-reply-to">replies@example.com</td>' in page
    assert '<td class="importance">high</td>' in page and '<td class="flag">flagged</td>' in page
    assert "<tr><th>x-run-id</th><td>manual__1</td></tr>" in page
    assert '<pre class="text-body">plain words\nsecond line</pre>' in page
    assert "Subject: Flagged &amp; important" in page  # the Raw tab
    (delivered,) = graph_emulator.inspect.messages("ann@example.com")
    assert "recipients-bcc" not in viewer(f"/_viewer/messages/{delivered['id']}")  # a recipient never sees Bcc


def test_message_body_is_served_under_a_policy_that_blocks_scripts_and_remote_content(graph, http, graph_emulator):
    send(graph, "Chart", "ann@example.com",
         '<!DOCTYPE html><html><body><img src="cid:chart"><img src="https://tracker.example/p.gif"></body></html>',
         "html", attachments=[file("chart.png", b"\x89PNG-bytes", "image/png", cid="chart")])
    (mail,) = graph_emulator.inspect.messages("ann@example.com")
    base = f"{graph_emulator.base_url}/_viewer/messages/{mail['id']}"
    body = http.get(base + "/body")
    policy = body.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "img-src 'self' data:" in policy and "script-src" not in policy
    assert re.search(r"sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox$", policy)
    assert body.headers["X-Content-Type-Options"] == "nosniff" and body.headers["Referrer-Policy"] == "no-referrer"
    assert body.text.startswith('<!DOCTYPE html><meta charset="utf-8"><base target="_blank"><html>')  # no quirks mode
    assert f'<img src="/_viewer/messages/{mail["id"]}/cid/chart">' in body.text
    image = http.get(f"{base}/cid/chart")
    assert image.content == b"\x89PNG-bytes" and image.headers["Content-Type"] == "image/png"
    assert http.get(f"{base}/cid/other").status_code == 404
    page = http.get(base).text
    assert "1 remote image or style blocked" in page
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in page


def test_attachments_download_byte_for_byte(graph, http, graph_emulator):
    big = os.urandom(5 * 1024 * 1024 + 7)  # over 3 MB: it goes through an upload session
    draft = graph("POST", "/messages", json={"subject": "Files", "toRecipients": [person("ann@example.com")],
                                             "body": {"contentType": "text", "content": "x"},
                                             "attachments": [file("page.html", b"<script>x</script>", "text/html")]})
    upload(graph, http, draft.json()["id"], "données 2026.bin", big)
    assert graph("POST", f"/messages/{draft.json()['id']}/send").status_code == 202
    (mail,) = graph_emulator.inspect.messages("ann@example.com")
    by_name = {a["name"]: a for a in mail["attachments"]}
    base = f"{graph_emulator.base_url}/_viewer/messages/{mail['id']}/attachments/"
    download = http.get(base + by_name["données 2026.bin"]["id"])
    assert download.content == big
    assert download.headers["Content-Disposition"] == (
        "attachment; filename=\"donn_es 2026.bin\"; filename*=UTF-8''donn%C3%A9es%202026.bin")
    page = http.get(base + by_name["page.html"]["id"])
    assert page.headers["Content-Disposition"].startswith("attachment;")  # never rendered on the viewer's origin
    assert page.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert "Too large to show here" in http.get(f"{graph_emulator.base_url}/_viewer/messages/{mail['id']}").text
    source = http.get(f"{graph_emulator.base_url}/_viewer/messages/{mail['id']}/source")
    assert source.headers["Content-Type"] == "text/plain; charset=utf-8" and b"Subject: Files" in source.content


def test_clearing_a_mailbox(graph, http, graph_emulator):
    send(graph, "One", "ann@example.com", **keyed("k-1"))
    send(graph, "Two", "bob@example.com", **keyed("k-2"))
    url = graph_emulator.base_url
    same_site = {"Origin": url, "Sec-Fetch-Site": "same-origin"}
    for refused in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = http.post(f"{url}/_viewer/mailboxes/ann@example.com/clear", headers=refused, allow_redirects=False)
        assert answer.status_code == 403 and "only from the viewer" in answer.text
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1
    version = graph_emulator.backend.store.version
    answer = http.post(f"{url}/_viewer/mailboxes/ann@example.com/clear", headers=same_site, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"  # ann was only a recipient
    assert graph_emulator.inspect.messages("ann@example.com") == [] and graph_emulator.backend.store.version > version
    assert len(graph_emulator.inspect.messages("bob@example.com")) == 1
    sender = graph_emulator.default_sender
    answer = http.post(f"{url}/_viewer/mailboxes/{sender}/clear", headers=same_site, allow_redirects=False)
    assert answer.headers["Location"] == "/?mailbox=airflow%40contoso.com"  # a user of the tenant stays
    assert graph_emulator.inspect.messages(sender, "sentitems") == []
    assert graph_emulator.inspect.deliveries(IDEMPOTENCY_PROPERTY) == {}
    assert http.post(f"{url}/_viewer/clear", headers=same_site, allow_redirects=False).status_code == 303
    assert graph_emulator.inspect.messages("bob@example.com") == []


def test_viewer_pages_answer_without_touching_the_request_log(graph, http, graph_emulator):
    draft = graph("POST", "/messages", json={"subject": "Look at me", "toRecipients": [person("ann@example.com")]})
    draft = draft.json()
    logged = len(graph_emulator.inspect.request_log)
    opened = http.get(draft["webLink"])  # Graph's webLink opens the message in the viewer
    assert opened.status_code == 200 and "<h1 class=\"subject\">Look at me</h1>" in opened.text
    assert "<span class=\"tag\">draft</span>" in http.get(graph_emulator.base_url + "/").text
    version = graph_emulator.backend.store.version
    assert http.get(graph_emulator.base_url + "/_viewer/version").json() == {"version": version}
    assert http.get(graph_emulator.base_url + "/_viewer/static/viewer.js").headers["Content-Type"].startswith(
        "text/javascript")
    assert http.get(graph_emulator.base_url + "/_viewer/static/../server.py").status_code in (400, 404)
    missing = http.get(graph_emulator.base_url + "/_viewer/messages/AAMkAGnope")
    assert missing.status_code == 404 and "No such message" in missing.text
    assert len(graph_emulator.inspect.request_log) == logged


def test_text_tab_prefers_the_mime_text_part(graph, http, graph_emulator):
    mime = EmailMessage()
    mime["From"], mime["To"], mime["Subject"] = "airflow@contoso.com", "ann@example.com", "Both parts"
    mime.set_content("The text part, as written.")
    mime.add_alternative("<p>The <b>HTML</b> part.</p>", subtype="html")
    sent = graph("POST", "/sendMail", data=base64.b64encode(mime.as_bytes()), headers={"Content-Type": "text/plain"})
    assert sent.status_code == 202, sent.text
    (mail,) = graph_emulator.inspect.messages("ann@example.com")
    page = http.get(f"{graph_emulator.base_url}/_viewer/messages/{mail['id']}").text
    assert '<pre class="text-body">The text part, as written.\n</pre>' in page
    assert "From the message&#39;s text/plain part." in page


def test_html_to_text():
    assert html_to_text(
        "<html><head><title>t</title><style>p{}</style></head><body><h2>Sales</h2><p>Total:  <b>12</b>\n units"
        "</p><table><tr><th>Region</th><th>Orders</th></tr><tr><td>North</td><td>128</td></tr></table>"
        "<ul><li>one</li><li>two</li></ul><img alt=\"chart\" src=\"cid:x\">a<br>b &amp; c<script>x()</script>"
        "</body></html>") == ("Sales\n\nTotal: 12 units\n\nRegion\tOrders\nNorth\t128\n\n- one\n- two\n\n"
                              "[chart]a\nb & c\n")


def test_a_stored_content_type_never_reaches_a_header(graph, http, graph_emulator):
    """A state directory from before the API refused them may hold attachments whose content type ends the
    headers early: the download and the cid: answers name a media type of their own, never the stored text."""
    body = {"contentType": "html", "content": '<img src="cid:logo">'}
    draft = graph("POST", "/messages", json={"subject": "old state", "body": body}).json()
    mailbox = graph_emulator.backend.store.find_mailbox(graph_emulator.default_sender)
    for name, content_type, cid in (("page.html", "text/html\r\n\r\n<script>alert(1)</script>", None),
                                    ("logo.png", "image/png\r\nX-Injected: 1", "logo")):
        graph_emulator.backend.store.add_attachment(mailbox, draft["id"], {
            "name": name, "contentType": content_type, "isInline": cid is not None, "contentId": cid,
            "content": b"<script>alert(1)</script>"})
    base = f"{graph_emulator.base_url}/_viewer/messages/{draft['id']}"
    page = {a["name"]: a for a in graph_emulator.inspect.full_message(draft["id"])["attachments"]}["page.html"]
    download = http.get(f"{base}/attachments/{page['id']}")
    inline = http.get(f"{base}/cid/logo")
    for answer in (download, inline):
        assert answer.status_code == 200 and "X-Injected" not in answer.headers
        assert answer.content == b"<script>alert(1)</script>"  # the bytes, never a page of the viewer's origin
    assert download.headers["Content-Type"] == "application/octet-stream"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert inline.headers["Content-Type"] == "application/octet-stream"  # not a media type: not an image
    assert http.get(base).status_code == 200 and http.get(f"{graph_emulator.base_url}/_emulator/messages/"
                                                          f"{draft['id']}.eml").status_code == 200


def _raw_answer(emulator, path: str, headers: dict):
    """(status, [(name, value)]) as the wire carried them; http.client sends a folded header as given."""
    import http.client
    import ssl

    connection = http.client.HTTPSConnection(emulator.site.host, emulator.site.port, timeout=10,
                                             context=ssl.create_default_context(cafile=str(emulator.ca_path)))
    try:
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status, answer.getheaders()
    finally:
        connection.close()


def test_the_http_layer_never_writes_a_line_break_into_a_header(graph_emulator, monkeypatch):
    """Whatever a handler puts in a response header (a bug, a value from a client), no CR or LF reaches the
    wire: the answer becomes a 500 without it. A folded request header is read as one line (RFC 9112)."""
    from graph_mail_emulator.http.wire import Response

    monkeypatch.setitem(graph_emulator.dispatcher.handlers, "viewer_version",
                        lambda request: Response(200, b"{}", {"X-Note": "a\r\nX-Injected: 1"}))
    status, headers = _raw_answer(graph_emulator, "/_viewer/version", {})
    assert status == 500 and not [name for name, _ in headers if name.lower() in ("x-injected", "x-note")]
    monkeypatch.undo()
    status, headers = _raw_answer(graph_emulator, "/_viewer/version", {"client-request-id": "abc\r\n X-Injected: 1"})
    echoed = dict(headers)["client-request-id"]
    assert status == 200 and "\r" not in echoed and "\n" not in echoed and echoed == "abc X-Injected: 1"


def test_the_form_that_sends_a_mail_from_outside(http, graph_emulator):
    graph_emulator.backend.store.add_user("reports-in@contoso.com")
    url = f"{graph_emulator.base_url}/_viewer/mailboxes/reports-in@contoso.com/receive"
    fields = {"from": "Vendor <vendor@northwind.example>", "subject": "Nightly <export>", "body": "<b>hi</b>",
              "bodyType": "html", "authentication": "none", "folder": "junkemail"}
    answer = http.post(url, data=fields, files=[("attachment", ("a.csv", b"1,2\n", "text/csv")),
                                                ("attachment", ("b.txt", b"x", "text/plain"))], allow_redirects=False)
    assert answer.status_code == 303, answer.text
    (arrived,) = graph_emulator.inspect.messages("reports-in@contoso.com", "junkemail")
    assert answer.headers["Location"] == f"/_viewer/messages/{arrived['id']}"
    assert arrived["subject"] == "Nightly <export>"
    assert arrived["body"] == {"contentType": "html", "content": "<b>hi</b>"}
    assert graph_emulator.inspect.attachment_bytes(arrived["id"]) == {"a.csv": b"1,2\n", "b.txt": b"x"}
    assert "compauth=fail reason=001" in arrived["internetMessageHeaders"][0]["value"]
    plain = http.post(url, data={"from": "vendor@northwind.example", "subject": "urlencoded"}, allow_redirects=False)
    assert plain.status_code == 303
    refused = http.post(url, data={"from": "not an address"})
    assert refused.status_code == 400 and "The mail was not delivered" in refused.text
    assert "not an address" in refused.text
    cross_site = http.post(url, data=fields, headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403
    outside = http.post(f"{graph_emulator.base_url}/_viewer/mailboxes/ann@example.com/receive", data=fields)
    assert outside.status_code == 404  # only the tenant's own mailboxes receive mail from outside
    assert len(graph_emulator.inspect.messages("reports-in@contoso.com", "inbox")) == 1
    page = http.get(f"{graph_emulator.base_url}/", params={"mailbox": "reports-in@contoso.com"}).text
    assert 'action="/_viewer/mailboxes/reports-in@contoso.com/receive"' in page
    assert "/receive" not in http.get(f"{graph_emulator.base_url}/").text  # no form on "All mailboxes"
