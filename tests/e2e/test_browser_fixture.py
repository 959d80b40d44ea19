"""Check that the browser fixture drives real Chromium against a local page and saves PNGs."""

from __future__ import annotations

import html
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

# The fixtures come from tests/fixtures/browser.py, also listed in tests/conftest.py; naming
# it here too keeps this file runnable on its own (pytest loads a plugin module only once).
pytest_plugins = ["tests.fixtures.browser"]
pytestmark = pytest.mark.browser

SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

FORM_PAGE = b"""<!doctype html>
<html><head><title>Reply to TKT-000042</title></head>
<body>
  <h1>TKT-000042</h1>
  <p>Clicks: <span id="clicks">0</span></p>
  <button id="more" onclick="
    const n = document.getElementById('clicks'); n.textContent = Number(n.textContent) + 1;
  ">More</button>
  <form method="post" action="/reply">
    <label>Your reply <textarea name="body"></textarea></label>
    <button type="submit">Send reply</button>
  </form>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    """A two-route site: GET / serves the form, POST /reply echoes the submitted body."""

    def do_GET(self) -> None:
        self._send(200, FORM_PAGE)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        fields = urllib.parse.parse_qs(self.rfile.read(length).decode())
        reply = html.escape(fields.get("body", [""])[0])
        self._send(200, f"<p id='thanks'>Thanks, we got: {reply}</p>".encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet


@pytest.fixture
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_button_click_updates_the_page(browser_page: Page, site: str) -> None:
    browser_page.goto(site)

    browser_page.get_by_role("button", name="More").click()
    browser_page.get_by_role("button", name="More").click()

    assert browser_page.title() == "Reply to TKT-000042"
    assert browser_page.locator("#clicks").text_content() == "2"


def test_form_submission_reaches_the_server_and_is_shown(
    browser_page: Page, site: str, screenshot: Callable[[str], Path]
) -> None:
    browser_page.goto(site)
    browser_page.get_by_label("Your reply").fill("It works <again> & again")

    browser_page.get_by_role("button", name="Send reply").click()

    browser_page.wait_for_url(f"{site}/reply")
    assert browser_page.locator("#thanks").text_content() == (
        "Thanks, we got: It works <again> & again"
    )
    path = screenshot("after-submit")
    assert path.parent == SCREENSHOT_DIR
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_each_test_starts_without_cookies(browser_page: Page, site: str) -> None:
    browser_page.goto(site)
    assert browser_page.context.cookies() == []
    browser_page.context.add_cookies([{"name": "session", "value": "x", "url": site}])
    assert [c["name"] for c in browser_page.context.cookies()] == ["session"]


def test_second_test_does_not_see_the_first_tests_cookie(browser_page: Page, site: str) -> None:
    browser_page.goto(site)
    assert browser_page.context.cookies() == []
