"""An app's connection token on the socket: `?token=` from the app's origins, refused when forged, expired or foreign."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from notifications import connection_tokens, services
from notifications.protocol import CLOSE_UNAUTHENTICATED
from project.asgi import application
from tests.connection import APP_ORIGIN, beside_an_app, sign
from tests.test_consumer import TIMEOUT, closed_with, fast, stop_hub

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("beside_an_app")]
__all__ = ["beside_an_app", "fast", "stop_hub"]  # fixtures, used here by name


@pytest.fixture
async def app_user() -> Any:
    user, _ = await database_sync_to_async(services.put_user)(username="u_42", fields=services.UserFields(email="ana@example.com"))
    return user


def socket(token: str, origin: str | None = APP_ORIGIN) -> WebsocketCommunicator:
    headers = [(b"host", b"notify.example"), *([(b"origin", origin.encode())] if origin else [])]
    return WebsocketCommunicator(application, f"/ws/notifications/?token={token}", headers=headers)


async def test_a_page_on_the_apps_origin_connects_with_its_token_and_gets_its_notifications(app_user: Any) -> None:
    ws = socket(sign("u_42"))
    assert (await ws.connect(timeout=TIMEOUT))[0]
    welcome = await ws.receive_json_from(timeout=TIMEOUT)
    assert welcome["type"] == "welcome"
    recipient = await database_sync_to_async(lambda: get_user_model().objects.get(username="u_42").pk)()
    await database_sync_to_async(services.notify)(recipient_ids=[recipient], content=services.Content(title="live"))
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert (frame["type"], frame["title"]) == ("notification", "live")
    await ws.disconnect()


async def test_a_page_on_a_foreign_origin_is_refused_even_with_a_good_token(app_user: Any) -> None:
    connected, _ = await socket(sign("u_42"), origin="http://evil.example").connect(timeout=TIMEOUT)
    assert not connected


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: sign("u_42", secret="not-the-apps-secret-but-32-chars-long"), id="forged"),
        pytest.param(lambda: sign("u_42", expires_in=-120), id="expired"),
        pytest.param(lambda: sign("someone-else"), id="unknown-user"),
        pytest.param(lambda: "not.a.token", id="garbage"),
    ],
)
async def test_a_bad_token_is_closed_4401(app_user: Any, token: Any) -> None:
    ws = socket(token())
    assert (await ws.connect(timeout=TIMEOUT))[0]
    assert await closed_with(ws) == CLOSE_UNAUTHENTICATED


async def test_an_open_socket_closes_4401_once_its_token_expires(app_user: Any, fast: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(connection_tokens, "LEEWAY_SECONDS", 0)
    ws = socket(sign("u_42", expires_in=2))
    assert (await ws.connect(timeout=TIMEOUT))[0]
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "welcome"
    assert await closed_with(ws) == CLOSE_UNAUTHENTICATED  # at a heartbeat after exp


async def test_an_open_socket_closes_4401_once_the_app_deletes_its_user(app_user: Any, fast: Any) -> None:
    ws = socket(sign("u_42"))
    assert (await ws.connect(timeout=TIMEOUT))[0]
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "welcome"
    await database_sync_to_async(services.delete_user)(username="u_42")
    assert await closed_with(ws) == CLOSE_UNAUTHENTICATED
