"""The Redis channel layer's connections: an idle node stays quiet and hears the next push at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections

from notifications import services
from tests.conftest import DaphneServer

pytestmark = [
    pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis channel layer needs REDIS_URL"),
    pytest.mark.django_db(transaction=True),
]

# Two and a half of channels-redis' blocking receives (5 s each): with redis-py's own
# 5 s read timeout, an idle node lost the layer within 5-14 s (docs/decisions/0007).
IDLE_SECONDS = 12.5


@pytest.fixture(autouse=True)
async def close_thread_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def fresh_daphne(channel_prefix: str, transactional_db: None) -> Iterator[tuple[DaphneServer, int]]:
    """A daphne and where this run starts in its log (the log of an earlier run on that port is appended to)."""
    server = DaphneServer(channel_prefix)
    start = server.log.stat().st_size if server.log.exists() else 0
    try:
        yield server.start(), start
    finally:
        server.stop()


async def test_a_read_outlasts_the_blocking_receive() -> None:
    layer: Any = get_channel_layer()
    pool = layer.create_pool(0)
    connection = pool.connection_class(**pool.connection_kwargs)  # redis-py's defaults filled in
    assert connection.socket_timeout > layer.brpop_timeout


@pytest.mark.server
async def test_an_idle_node_stays_quiet_and_hears_the_next_push(
    fresh_daphne: tuple[DaphneServer, int], user: Any, token_for: Any, record_property: Any
) -> None:
    daphne, log_start = fresh_daphne
    token = await sync_to_async(token_for)(user)
    async with websockets.connect(daphne.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "welcome"
        idle_until = time.monotonic() + IDLE_SECONDS
        with pytest.raises(TimeoutError):  # the end of the quiet spell
            while True:
                # Heartbeats only: nothing goes through the channel layer meanwhile.
                assert json.loads(await asyncio.wait_for(ws.recv(), idle_until - time.monotonic()))["type"] == "heartbeat"

        published = time.monotonic()
        await sync_to_async(services.notify)(recipient_ids=[user.id], content=services.Content(title="after a quiet spell"))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        while frame["type"] == "heartbeat":
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        record_property("push_after_idle_ms", round((time.monotonic() - published) * 1000, 1))
        assert (frame["type"], frame["title"]) == ("notification", "after a quiet spell")

    log = daphne.log.read_bytes()[log_start:].decode()
    assert "hub lost the channel layer" not in log
    assert "Traceback" not in log
