"""The mailbox viewer in a real headless Chromium: what a person sees of the mail a program sent."""

from __future__ import annotations

import http.server
import re
import struct
import threading
import zlib
from pathlib import Path

import pytest
from browser import ARTIFACTS
from graph_http import file, keyed, person, send

REPORT_TABLE = ("<table><tr><th>Region</th><th>Orders</th><th>Revenue</th></tr>"
                "<tr><td>North</td><td>128</td><td>15,360.50</td></tr><tr><td>South</td><td>94</td><td>11,020.00</td></tr>"
                "<tr><td>East</td><td>143</td><td>18,211.75</td></tr><tr><td>West</td><td>77</td><td>8,904.25</td></tr>"
                "</table>")
CSV = b"region,orders,revenue\nNorth,128,15360.50\nSouth,94,11020.00\nEast,143,18211.75\nWest,77,8904.25\n"


def png(width: int, height: int) -> bytes:
    """A real PNG of one colour, for the browser to decode."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x33\x66\x99" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def open_message(page, subject: str, mailbox: str):
    row = page.locator("tr", has_text=mailbox).filter(has_text=subject)
    row.locator("td.subject a").click()
    frame = page.wait_for_selector("#body-frame").content_frame()  # attached now, perhaps not yet navigated
    frame.wait_for_url(re.compile(r"/body$"))
    frame.wait_for_load_state("load")
    return frame


def test_report_mail_renders_with_its_chart_and_csv(graph, graph_emulator, page):
    """A report as a DAG sends it: an HTML table, a chart inline (cid:), the data as CSV, a header of its own
    and an idempotency key."""
    send(graph, "Daily sales report for 2026-11-20", [person("ann@example.com", "Ann Analyst"), "bob@example.com"],
         f'<p>Sales by region</p>{REPORT_TABLE}<img src="cid:chart" alt="revenue">', "html",
         ccRecipients=[person("sales-leads@example.com")], **keyed("report/2026-11-20"),
         internetMessageHeaders=[{"name": "x-report-id", "value": "sales-20261120"}],
         attachments=[file("sales_2026-11-20.csv", CSV, "text/csv"),
                      file("revenue_2026-11-20.png", png(320, 160), "image/png", cid="chart")])

    page.goto(graph_emulator.base_url + "/")
    rows = page.locator("table.messages tbody tr")
    assert rows.count() == 4  # three recipients' inboxes and the sender's Sent Items
    ann = page.locator("tr", has_text="ann@example.com · Inbox")
    assert ann.locator("td.subject").inner_text().startswith("Daily sales report for 2026-11-20")
    assert ann.locator("td.attachments").inner_text() == "1 + 1 inline"
    assert "bob@example.com" in ann.locator("td.to").inner_text()

    frame = open_message(page, "Daily sales report", "ann@example.com · Inbox")
    cells = frame.locator("table tr").all_inner_texts()
    assert [re.split(r"\s+", row.strip()) for row in cells] == [
        ["Region", "Orders", "Revenue"], ["North", "128", "15,360.50"], ["South", "94", "11,020.00"],
        ["East", "143", "18,211.75"], ["West", "77", "8,904.25"]]
    frame.wait_for_function("() => [...document.images].every(image => image.complete)")
    (chart,) = frame.evaluate("() => [...document.images].map(i => ({src: i.getAttribute('src'), "
                              "width: i.naturalWidth, height: i.naturalHeight}))")
    assert chart["src"].startswith("/_viewer/messages/") and chart["src"].endswith("/cid/chart")
    assert (chart["width"], chart["height"]) == (320, 160)  # the PNG sent, decoded by the browser

    envelope = page.locator("table.envelope").inner_text()
    assert "Ann Analyst <ann@example.com>" in envelope and "sales-leads@example.com" in envelope
    page.get_by_role("tab", name="Headers").click()
    assert page.locator("table.headers").inner_text().split()[:2] == ["x-report-id", "sales-20261120"]
    assert "Idempotency key" in page.locator("table.properties").inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    page.get_by_role("tab", name="HTML").click()
    page.screenshot(path=str(ARTIFACTS / "viewer-report-mail.png"), full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="sales_2026-11-20.csv").click()
    assert download.value.suggested_filename == "sales_2026-11-20.csv"
    assert Path(download.value.path()).read_bytes() == CSV

    with page.expect_download() as eml:
        page.get_by_role("link", name="Download .eml").click()
    assert b"Subject: Daily sales report for 2026-11-20" in Path(eml.value.path()).read_bytes()


def test_list_updates_as_mail_arrives(graph_emulator, graph, page):
    page.goto(graph_emulator.base_url + "/")
    assert "No mail here yet" in page.locator("#list").inner_text()
    page.evaluate("window.sameDocument = true")
    send(graph, "Arrived while watching", "watcher@example.com", "hi")
    page.locator("td.subject", has_text="Arrived while watching").first.wait_for(timeout=10_000)
    assert page.evaluate("window.sameDocument") is True  # refreshed in place, not reloaded
    assert "watcher@example.com" in page.locator("#sidebar").inner_text()


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):
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


def test_mail_html_is_sandboxed(graph_emulator, graph, page, remote_server):
    remote, hits = remote_server
    html = (f'<html><head><link rel="stylesheet" href="{remote}/style.css"></head><body>'
            f'<p id="text">Quarterly numbers</p><img src="{remote}/pixel.png" alt="pixel">'
            f'<div style="background:url({remote}/bg.png)">styled</div>'
            '<script>document.body.dataset.ran = "script"</script>'
            '<img src="data:," onerror="document.body.dataset.ran = \'handler\'">'
            '<a id="out" href="https://example.com/">a link</a></body></html>')
    send(graph, "Hostile", "ann@example.com", html, "html", attachments=[file("notes.txt", b"plain", "text/plain")])
    page.goto(graph_emulator.base_url + "/")
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


def test_search_and_clear_from_the_page(graph_emulator, graph, page):
    send(graph, "Invoices for March", "ann@example.com")
    send(graph, "Team lunch", "bob@example.com", "y")
    page.goto(graph_emulator.base_url + "/")
    page.get_by_role("searchbox").fill("march")
    page.get_by_role("button", name="Search").click()
    assert page.locator("td.subject").all_inner_texts() == ["Invoices for March", "Invoices for March"]

    page.locator("#sidebar a", has_text="bob@example.com").click()
    page.get_by_role("button", name="Clear mailbox").click()
    page.wait_for_url(graph_emulator.base_url + "/")
    assert graph_emulator.inspect.messages("bob@example.com") == []
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1
    assert "bob@example.com" not in page.locator("#sidebar").inner_text()
