"""Peer 2, plain Channels: a consumer joins one group; group_send through channels-redis; nothing stored.

Served by daphne: `daphne bench.peers.channels_app:application`, with
BENCH_REDIS_URL and BENCH_CHANNEL_PREFIX in the environment.
"""

from __future__ import annotations

import os
from typing import Any

import django
from django.conf import settings

GROUP = "bench"

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-peer-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")],
                    "prefix": os.environ.get("BENCH_CHANNEL_PREFIX", "benchpeer"),
                    # Room for a whole burst per socket: capacity is not what is measured.
                    "capacity": 1000,
                    "expiry": 60,
                },
            }
        },
    )
    django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class BenchConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"type": "welcome"})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def bench_notification(self, event: dict[str, Any]) -> None:
        await self.send_json(event["frame"])


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/", BenchConsumer.as_asgi())])})
