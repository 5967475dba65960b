"""Through a proxy that blocks WebSockets, in headless Chromium: the dashboard goes live over the event stream and comes back to the socket.

A real daphne process behind tests/blocking_proxy.py; fixtures and helpers from test_e2e_browser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from tests import test_e2e_browser as e2e
from tests.blocking_proxy import BlockingProxy
from tests.conftest import DaphneServer
from tests.test_e2e_browser import Api, create_user, db, expect_live, items, log_in

pytestmark = pytest.mark.browser

api, browser, new_context = e2e.api, e2e.browser, e2e.new_context

TIMEOUT_MS = 20000


@pytest.fixture
def proxy(daphne: DaphneServer) -> Iterator[BlockingProxy]:
    proxy = BlockingProxy(daphne.port)
    yield proxy
    proxy.stop()


def read_at(notification_id: int) -> Any:
    from notifications.models import Notification

    return db(lambda: Notification.objects.get(pk=notification_id).read_at)


@pytest.mark.server
def test_the_dashboard_works_through_a_proxy_that_blocks_websockets(
    daphne: DaphneServer, proxy: BlockingProxy, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    page = log_in(new_context(), proxy, "alice")  # type: ignore[arg-type]  # it has the server's `url`
    assert proxy.refused >= 2
    assert page.evaluate("window.notifyClient.transport") == "stream"
    page.evaluate("() => { window.seen = []; window.notifyClient.on('notification', (n) => window.seen.push(n)); }")

    # Another device of alice's, on a socket straight to the server.
    other = log_in(new_context(), daphne, "alice")
    assert other.evaluate("window.notifyClient.transport") == "websocket"

    api.publish("hello through the proxy", users=[alice])
    expect(items(page)).to_have_count(1)
    notification_id = page.evaluate("window.seen[0].id")
    assert page.evaluate(f"window.notifyClient.markRead([{notification_id}]).then((r) => r.ok)") is True
    assert read_at(notification_id) is not None
    other.wait_for_function("window.notifyClient.unread === 0", timeout=TIMEOUT_MS)

    # The server restarts: the browser's own reconnect resumes the stream from its Last-Event-ID.
    daphne.restart()
    api.publish("after the restart", users=[alice])
    expect(items(page)).to_have_count(2)
    expect_live(page)
    assert page.evaluate("window.seen.map((n) => n.seq)") == [1, 3]  # seq 2 is the read mark's state event
    assert page.evaluate("window.notifyClient.duplicates") == 0
    assert page.evaluate("window.notifyClient.transport") == "stream"

    # The proxy lets upgrades through again: the client goes back to the socket at its next try
    # (made soon here: the dashboard's client tries every minute).
    proxy.blocking = False
    page.evaluate("() => { window.notifyClient._transport._probeMs = 200; window.notifyClient._transport.live(); }")
    page.wait_for_function("window.notifyClient.transport === 'websocket' && window.notifyClient.state === 'live'", timeout=TIMEOUT_MS)
    api.publish("back on the socket", users=[alice])
    expect(items(page)).to_have_count(3)
    assert page.evaluate("window.seen.map((n) => n.seq)") == [1, 3, 4]


@pytest.mark.server
def test_a_stream_refused_for_its_credential_stops_as_a_socket_closed_with_4401_does(
    daphne: DaphneServer, proxy: BlockingProxy, new_context: Callable[[], BrowserContext]
) -> None:
    # EventSource hides a refused stream's status; stream-transport.js reads it again by fetch,
    # so a logged-out user is told to log in rather than left backing off as if offline.
    create_user("bob")
    context = new_context()
    page = log_in(context, proxy, "bob")  # type: ignore[arg-type]
    assert page.evaluate("window.notifyClient.transport") == "stream"
    context.clear_cookies()  # the session is gone from this browser
    daphne.restart()  # the stream ends (1012); its reconnect is refused with 401
    page.wait_for_function("window.notifyClient.state === 'offline'", timeout=TIMEOUT_MS)
    assert page.evaluate("window.notifyClient._stateReason") == "unauthenticated"
