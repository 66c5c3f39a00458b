"""The API docs page renders in real Chromium under the console's CSP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the live server's ORM
# work happens in its own thread.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"


def test_swagger_ui_renders_every_operation_without_csp_errors(live_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (see tests/ensure_browser.py)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(f"{live_server.url}/api/v1/docs")
            page.wait_for_selector(".opblock", timeout=15_000)
            operations = page.locator(".opblock").count()
        finally:
            browser.close()
    assert operations >= 8
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
