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
    """Open the copy of a message in ``mailbox`` ("ann@example.com · Inbox") from the "All mailboxes" list."""
    row = page.locator("table.messages tbody tr").filter(has=page.locator("td.subject > a", has_text=subject))
    row.locator(f'.copies a[title="{mailbox}"]').click()
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
    assert rows.count() == 1  # one send, one row: its four copies inside it
    row = rows.first
    assert row.locator("td.subject > a").inner_text() == "Daily sales report for 2026-11-20"
    assert row.locator(".copies a").all_inner_texts() == [
        "airflow@contoso.com · Sent Items", "ann@example.com", "bob@example.com", "sales-leads@example.com"]
    assert row.locator("td.attachments").inner_text() == "1 + 1 inline"
    assert "bob@example.com" in row.locator(".to").inner_text()

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
    assert page.locator("td.subject > a").all_inner_texts() == ["Invoices for March"]  # its two copies in one row

    page.locator("#sidebar a", has_text="bob@example.com").click()
    page.get_by_role("button", name="Clear mailbox").click()
    page.wait_for_url(graph_emulator.base_url + "/")
    assert graph_emulator.inspect.messages("bob@example.com") == []
    assert len(graph_emulator.inspect.messages("ann@example.com")) == 1
    assert "bob@example.com" not in page.locator("#sidebar").inner_text()


def demo_mail(graph, graph_emulator) -> None:
    """What `make demo` leaves: three daily reports to two people and a team (Cc), and a vendor's mail."""
    graph_emulator.backend.store.add_user("finance@contoso.com", "Finance team")
    for day in ("2026-11-18", "2026-11-19", "2026-11-20"):
        send(graph, f"Daily sales report for {day}", [person("finance@contoso.com", "Finance team"),
                                                      person("ann@example.com", "Ann Analyst")],
             f"<p>Sales for {day}</p>{REPORT_TABLE}", "html", importance="high",
             ccRecipients=[person("regional-sales-leads-europe@example.org", "Regional sales leads, Europe")],
             attachments=[file(f"sales_{day}.csv", CSV, "text/csv")])
    graph_emulator.inbound.receive(to="finance@contoso.com", sender="Northwind Traders <exports@northwind.example>",
                                   subject="Nightly export of every order, return and credit note since Monday",
                                   attachments=[("orders.csv", CSV)])


@pytest.mark.parametrize("width, height, name", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_the_list_and_a_message_are_readable_at_desktop_and_phone_width(graph, graph_emulator, chromium, width,
                                                                         height, name):
    demo_mail(graph, graph_emulator)
    context = chromium.new_context(ignore_https_errors=True, viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        page.goto(graph_emulator.base_url + "/")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"viewer-list-{name}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing scrolls sideways
        rows = page.locator("table.messages tbody tr")
        assert rows.count() == 4  # one row per message, whatever its copies
        report = rows.filter(has=page.locator("td.subject > a", has_text="2026-11-20"))
        assert report.locator(".copies a").count() == 4
        line = float(page.evaluate("parseFloat(getComputedStyle(document.body).lineHeight)"))
        for subject in page.locator("td.subject > a").all():
            lines = subject.bounding_box()["height"] / line
            assert lines <= (2.2 if width >= 1280 else 3.2), (subject.inner_text(), lines)
        assert page.locator("td.subject > a", has_text="Daily sales report for 2026-11-20").bounding_box()[
            "height"] < 1.5 * line  # a report's subject on one line
        open_message(page, "Daily sales report for 2026-11-20", "ann@example.com · Inbox")
        page.screenshot(path=str(ARTIFACTS / f"viewer-message-{name}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.locator("h1.subject").bounding_box()["width"] <= width
    finally:
        context.close()


def test_a_mail_from_outside_through_the_viewers_form(graph_emulator, page, tmp_path):
    graph_emulator.backend.store.add_user("reports-in@contoso.com")
    export = tmp_path / "export.csv"
    export.write_bytes(CSV)
    page.goto(graph_emulator.base_url + "/?mailbox=reports-in@contoso.com")
    page.get_by_text("Send a mail to reports-in@contoso.com from outside").click()
    page.get_by_label("From", exact=True).fill("Northwind <exports@northwind.example>")
    page.get_by_label("Subject", exact=True).fill("Nightly export")
    page.get_by_label("Sender authentication").select_option("fail")
    page.get_by_label("Attachments").set_input_files(str(export))
    page.get_by_role("button", name="Deliver to reports-in@contoso.com").click()
    page.wait_for_url(re.compile(r"/_viewer/messages/"))
    assert page.locator("h1.subject").inner_text() == "Nightly export"
    assert "export.csv" in page.locator("ul.attachments").inner_text()
    (arrived,) = graph_emulator.inspect.messages("reports-in@contoso.com")
    assert arrived["from"]["emailAddress"] == {"name": "Northwind", "address": "exports@northwind.example"}
    assert "compauth=fail" in arrived["internetMessageHeaders"][0]["value"]
    assert graph_emulator.inspect.attachment_bytes(arrived["id"]) == {"export.csv": CSV}
