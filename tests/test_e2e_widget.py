"""<notify-inbox> on an app's own page, on another origin, in headless Chromium against a real daphne process.

The app is a small HTTP server on another port: its page loads widget.js from
the service, and its /notifications/token signs a connection token the way
docs/integrate.md shows. A foreign origin, a forged and an expired token are refused.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import websockets
from playwright.sync_api import Browser, Page, expect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests import test_e2e_browser as e2e
from tests.conftest import DaphneServer, free_port
from tests.connection import SECRET, sign
from tests.test_e2e_browser import db

pytestmark = pytest.mark.browser

browser = e2e.browser  # the fixture, used here by name
APP_PORT = free_port()
APP_ORIGIN = f"http://127.0.0.1:{APP_PORT}"
USERNAME = "u_web"


class AppServer(ThreadingHTTPServer):
    service_url = ""


class AppPages(BaseHTTPRequestHandler):
    """The app: a page with the inbox, and the token endpoint its backend would serve to a signed-in user."""

    server: AppServer

    def do_GET(self) -> None:
        if self.path == "/notifications/token":
            self._send("application/json", json.dumps({"token": sign(USERNAME, expires_in=300)}))
        elif self.path == "/":
            service = self.server.service_url
            self._send(
                "text/html",
                f"""<!doctype html><title>The app</title>
                <script type="module" src="{service}/static/notifications/widget.js"></script>
                <h1>Our app</h1><notify-inbox server="{service}" token-url="/notifications/token"></notify-inbox>""",
            )
        else:
            self.send_error(404)

    def _send(self, content_type: str, body: str) -> None:
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def daphne(daphne_factory: Any) -> DaphneServer:
    return daphne_factory(NOTIFY_CONNECTION_SECRET=SECRET, NOTIFY_ALLOWED_ORIGINS=APP_ORIGIN)


@pytest.fixture
def app(daphne: DaphneServer) -> Iterator[str]:
    server = AppServer(("127.0.0.1", APP_PORT), AppPages)
    server.service_url = daphne.url
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield APP_ORIGIN
    server.shutdown()
    server.server_close()


@pytest.fixture
def app_user() -> int:
    def create() -> int:
        from django.contrib.auth import get_user_model

        from notifications import services

        services.put_user(username=USERNAME, fields=services.UserFields(email="web@example.com"))
        return int(get_user_model().objects.get(username=USERNAME).pk)

    return db(create)


def publish(user_id: int, title: str) -> None:
    def send() -> None:
        from notifications import services

        services.notify(recipient_ids=[user_id], content=services.Content(title=title))

    db(send)


def inbox(page: Page) -> Any:
    return page.locator("notify-inbox")


def test_the_inbox_on_an_apps_page_goes_live_shows_arrivals_and_marks_read(browser: Browser, app: str, app_user: int) -> None:
    publish(app_user, "before the page")
    page = browser.new_context().new_page()
    page.goto(app + "/")
    expect(inbox(page)).to_have_attribute("data-state", "live")
    expect(inbox(page)).to_have_attribute("data-unread", "1")
    expect(inbox(page).locator("li .title")).to_have_text(["before the page"])

    publish(app_user, "while it is open")
    expect(inbox(page).locator("li .title")).to_have_text(["while it is open", "before the page"])
    expect(inbox(page).locator(".count")).to_have_text("2")

    inbox(page).get_by_role("button", name="Notifications").click()
    inbox(page).locator("li", has_text="while it is open").click()
    expect(inbox(page)).to_have_attribute("data-unread", "1")  # the service's count, after the read

    def read_titles() -> list[str]:
        from notifications.models import Notification

        return list(Notification.objects.filter(recipient_id=app_user, read_at__isnull=False).values_list("title", flat=True))

    assert db(read_titles) == ["while it is open"]


def test_a_foreign_origin_a_forged_and_an_expired_token_are_refused(daphne: DaphneServer, app_user: int) -> None:
    async def attempt(token: str, origin: str) -> int | None:
        url = f"{daphne.ws_url}?token={token}"
        async with websockets.connect(url, origin=origin, open_timeout=10) as ws:  # type: ignore[arg-type]
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    async def refused_handshake() -> int:
        with pytest.raises(InvalidStatus) as refused:
            await attempt(sign(USERNAME), "http://evil.example")
        return refused.value.response.status_code

    assert asyncio.run(refused_handshake()) == 403
    assert asyncio.run(attempt(sign(USERNAME, secret="a-forged-secret-that-is-long-enough!"), APP_ORIGIN)) == 4401
    assert asyncio.run(attempt(sign(USERNAME, expires_in=-120), APP_ORIGIN)) == 4401
