"""Connections of database calls made from async code go back to the pool (notifications/db.py)."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from notifications import auth, hub
from project.asgi import application

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("pool" not in connections["default"].settings_dict["OPTIONS"], reason="needs PostgreSQL with the pool"),
]


def checked_out(pool: Any) -> int:
    stats = pool.get_stats()
    return int(stats["pool_size"] - stats["pool_available"])


async def test_sockets_give_their_database_connections_back(user: Any) -> None:
    pool = connections["default"].pool  # type: ignore[attr-defined]  # PostgreSQL with OPTIONS["pool"] only
    token = await database_sync_to_async(lambda: auth.issue_token(user=user, scopes=["read"]).secret)()
    before = checked_out(pool)
    try:
        for _ in range(5):
            ws = WebsocketCommunicator(application, "/ws/notifications/", headers=[(b"authorization", f"Bearer {token}".encode())])
            assert (await ws.connect(timeout=5))[0]
            assert (await ws.receive_json_from(timeout=5))["type"] == "welcome"
            await ws.disconnect()
    finally:
        await hub.hub().stop()
    # Before the fix every authentication and welcome kept its connection: the pool ran dry after a few sockets.
    assert checked_out(pool) == before
