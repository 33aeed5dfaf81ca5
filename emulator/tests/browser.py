"""Headless Chromium for the viewer's tests: Debian's browser driven by Playwright (no browser download).

When either is missing the tests are skipped, with a reason that says what to install; conftest repeats
it at the end of the run so that a skipped browser suite is never mistaken for a passing one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SKIP_PREFIX = "browser tests skipped"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Without the background-networking flags Chromium keeps trying to reach Google's hosts.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{SKIP_PREFIX}: no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"{SKIP_PREFIX}: the playwright package is not installed (it is in the test extra: make install)"
    return None


@pytest.fixture(scope="session")
def chromium():
    reason = missing()
    if reason and os.environ.get("REQUIRE_BROWSER"):  # CI: a missing browser is a failure, not a skip
        pytest.fail(reason.replace(SKIP_PREFIX, "browser tests cannot run"))
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    """A fresh browser profile per test; the emulator's certificate comes from its own CA, not a public one."""
    context = chromium.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()
