"""The cookie socket's origin check (notifications/origins.py): scheme, host and port, as Django's CSRF checks an Origin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from project.asgi import application
from tests.test_consumer import TIMEOUT, stop_hub  # noqa: F401 (stop_hub: an autouse fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


async def handshake(user: Any, origin: str, *, host: str = "localhost:8000", scheme: str = "ws") -> bool:
    """Whether a socket with this user's session cookie, from this Origin, is accepted."""
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"origin", origin.encode()), (b"host", host.encode())]
    ws = WebsocketCommunicator(application, "/ws/notifications/", headers=headers)
    ws.scope["scheme"] = scheme  # as the server saw the handshake: ws, or wss over TLS
    connected, _ = await ws.connect(timeout=TIMEOUT)
    if connected:
        assert (await ws.receive_json_from(timeout=TIMEOUT))["user"] == user.id
    await ws.disconnect()  # a refused one too: the denier waits for the disconnect, and it must end within the test
    return bool(connected)


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [("http://localhost:8000", "localhost:8000", "ws"), ("https://localhost", "localhost", "wss"), ("http://127.0.0.1", "127.0.0.1", "ws")],
)
async def test_the_sites_own_origin_is_accepted(user: Any, origin: str, host: str, scheme: str) -> None:
    assert await handshake(user, origin, host=host, scheme=scheme)


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:9999",  # another port
        "http://localhost",  # the default port is another port too
        "https://localhost:8000",  # another scheme
        "http://evil.example:8000",  # another host
        "http://sub.localhost:8000",
        "null",
        "",
    ],
)
async def test_another_origin_is_refused_at_the_handshake(user: Any, origin: str) -> None:
    assert not await handshake(user, origin)


async def test_a_plain_socket_from_an_https_page_is_refused(user: Any) -> None:
    """The page was served over TLS but the socket reached the server without it: not the same origin."""
    assert not await handshake(user, "https://localhost:8000", scheme="ws")
    assert not await handshake(user, "http://localhost:8000", scheme="wss")


async def test_a_host_outside_allowed_hosts_is_not_the_sites_own(user: Any) -> None:
    assert not await handshake(user, "http://rebound.example:8000", host="rebound.example:8000")


async def test_csrf_trusted_origins_are_accepted_exactly_or_by_wildcard(user: Any, settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example", "https://*.example.org"]
    assert await handshake(user, "https://app.example")
    assert await handshake(user, "https://eu.example.org")
    assert not await handshake(user, "http://app.example")  # the scheme counts
    assert not await handshake(user, "https://app.example:8443")  # and the port
    assert not await handshake(user, "http://eu.example.org")


@pytest.mark.server
def test_on_a_real_server_the_port_counts_and_a_foreign_origin_gets_403(daphne: Any, user: Any) -> None:
    client = Client()
    client.force_login(user)
    cookie = {"Cookie": f"sessionid={client.cookies['sessionid'].value}"}
    own = f"http://127.0.0.1:{daphne.port}"  # the Host header a browser sends carries the port
    with connect(daphne.ws_url, origin=Origin(own), additional_headers=cookie) as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT))["user"] == user.id
    for foreign in ("http://127.0.0.1:9999", "http://127.0.0.1"):
        with pytest.raises(InvalidStatus) as refused:
            connect(daphne.ws_url, origin=Origin(foreign), additional_headers=cookie)
        assert refused.value.response.status_code == 403
