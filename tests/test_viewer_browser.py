"""The mailbox viewer in a real headless Chromium: what a DAG author sees after `airflow dags test`."""

from __future__ import annotations

import http.server
import re
import threading

import pytest
from browser import ARTIFACTS

from airflow_graph_mail.mail.attachments import Attachment
from airflow_graph_mail.mail.message import Message


def open_message(page, subject: str, mailbox: str):
    row = page.locator("tr", has_text=mailbox).filter(has_text=subject)
    row.locator("td.subject a").click()
    page.wait_for_selector("#body-frame")
    frame = page.frame(url=re.compile(r"/body$"))
    frame.wait_for_load_state("load")
    return frame


def test_report_mail_renders_with_its_chart_and_csv(run_dag, graph_emulator, page, tmp_path):
    result = run_dag("report_distribution")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    page.goto(graph_emulator.viewer_url)
    rows = page.locator("table.messages tbody tr")
    assert rows.count() == 4  # three recipients' inboxes and the sender's Sent Items
    ann = page.locator("tr", has_text="ann@example.com · Inbox")
    assert ann.locator("td.subject").inner_text().startswith("Daily sales report for 2026-11-20")
    assert ann.locator("td.attachments").inner_text() == "1 + 1 inline"
    assert "Bob" not in ann.locator("td.to").inner_text() and "bob@example.com" in ann.locator("td.to").inner_text()

    frame = open_message(page, "Daily sales report", "ann@example.com · Inbox")
    cells = frame.locator("table tr").all_inner_texts()
    assert [re.split(r"\s+", row.strip()) for row in cells] == [
        ["Region", "Orders", "Revenue"], ["North", "128", "15,360.50"], ["South", "94", "11,020.00"],
        ["East", "143", "18,211.75"], ["West", "77", "8,904.25"]]
    frame.wait_for_function("() => [...document.images].every(image => image.complete)")
    (chart,) = frame.evaluate("() => [...document.images].map(i => ({src: i.getAttribute('src'), "
                              "width: i.naturalWidth, height: i.naturalHeight}))")
    assert chart["src"].startswith("/_viewer/messages/") and chart["src"].endswith("/cid/chart")
    assert (chart["width"], chart["height"]) == (320, 160)  # the PNG the DAG drew, decoded by the browser

    envelope = page.locator("table.envelope").inner_text()
    assert "Ann Analyst <ann@example.com>" in envelope and "sales-leads@example.com" in envelope
    page.get_by_role("tab", name="Headers").click()
    assert page.locator("table.headers").inner_text().split()[:3] == ["x-report-id", "sales-20261120",
                                                                           "x-airflow-graph-mail-ref"]
    assert "Idempotency key" in page.locator("table.properties").inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    page.get_by_role("tab", name="HTML").click()
    page.screenshot(path=str(ARTIFACTS / "viewer-report-mail.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="sales_2026-11-20.csv").click()
    assert download.value.suggested_filename == "sales_2026-11-20.csv"
    original = (tmp_path / "reports" / "sales_2026-11-20.csv").read_bytes()
    assert open(download.value.path(), "rb").read() == original

    with page.expect_download() as eml:
        page.get_by_role("link", name="Download .eml").click()
    assert b"Subject: Daily sales report for 2026-11-20" in open(eml.value.path(), "rb").read()


def test_list_updates_as_mail_arrives(graph_emulator, hook, page):
    page.goto(graph_emulator.viewer_url)
    assert "No mail here yet" in page.locator("#list").inner_text()
    page.evaluate("window.sameDocument = true")
    hook.send_mail(Message(subject="Arrived while watching", to=["watcher@example.com"], body="hi"))
    page.locator("td.subject", has_text="Arrived while watching").first.wait_for(timeout=10_000)
    assert page.evaluate("window.sameDocument") is True  # refreshed in place, not reloaded
    assert "watcher@example.com" in page.locator("#sidebar").inner_text()


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - BaseHTTPRequestHandler's naming
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def remote_server():
    """A server standing in for a tracker on the internet; a mail shown in the viewer must never reach it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    _CountingHandler.hits = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _CountingHandler.hits
    server.shutdown()


def test_mail_html_is_sandboxed(graph_emulator, hook, page, remote_server):
    remote, hits = remote_server
    html = (f'<html><head><link rel="stylesheet" href="{remote}/style.css"></head><body>'
            f'<p id="text">Quarterly numbers</p><img src="{remote}/pixel.png" alt="pixel">'
            f'<div style="background:url({remote}/bg.png)">styled</div>'
            '<script>document.body.dataset.ran = "script"</script>'
            '<img src="data:," onerror="document.body.dataset.ran = \'handler\'">'
            '<a id="out" href="https://example.com/">a link</a></body></html>')
    hook.send_mail(Message(subject="Hostile", to=["ann@example.com"], body=html, body_type="html",
                           attachments=[Attachment.from_bytes("notes.txt", b"plain")]))
    page.goto(graph_emulator.viewer_url)
    frame = open_message(page, "Hostile", "ann@example.com · Inbox")
    assert frame.locator("#text").inner_text() == "Quarterly numbers"
    assert frame.evaluate("() => document.body.dataset.ran || null") is None  # no script, no handler ran
    assert frame.locator("#out").get_attribute("target") is None
    assert frame.evaluate("() => document.querySelector('base').target") == "_blank"
    page.wait_for_timeout(500)
    assert hits == []  # nothing fetched from outside the message
    assert "3 remote images or styles blocked" in page.locator(".notice").inner_text()
    page.get_by_role("tab", name="Text").click()
    assert "Quarterly numbers" in page.locator("pre.text-body").inner_text()


def test_search_and_clear_from_the_page(graph_emulator, hook, page):
    hook.send_mail(Message(subject="Invoices for March", to=["ann@example.com"], body="x"))
    hook.send_mail(Message(subject="Team lunch", to=["bob@example.com"], body="y"))
    page.goto(graph_emulator.viewer_url)
    page.get_by_role("searchbox").fill("march")
    page.get_by_role("button", name="Search").click()
    assert page.locator("td.subject").all_inner_texts() == ["Invoices for March", "Invoices for March"]

    page.locator("#sidebar a", has_text="bob@example.com").click()
    page.get_by_role("button", name="Clear mailbox").click()
    page.wait_for_url(graph_emulator.viewer_url)
    assert graph_emulator.messages("bob@example.com") == []
    assert len(graph_emulator.messages("ann@example.com")) == 1
    assert "bob@example.com" not in page.locator("#sidebar").inner_text()
