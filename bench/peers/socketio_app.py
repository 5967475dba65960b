"""Peer 3, python-socketio with its Redis manager (AsyncRedisManager), served by uvicorn; nothing stored.

`uvicorn bench.peers.socketio_app:app`, with BENCH_REDIS_URL and
BENCH_CHANNEL_PREFIX in the environment. Every client joins the room "bench"
on connect; the publisher emits to that room through Redis with a write-only
manager, the way a separate process publishes to a Socket.IO cluster.
"""

from __future__ import annotations

import os
from typing import Any

import socketio

ROOM = "bench"

manager = socketio.AsyncRedisManager(
    os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), channel=os.environ.get("BENCH_CHANNEL_PREFIX", "benchpeer") + ":sio"
)
sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins=[], logger=False, engineio_logger=False)


@sio.event
async def connect(sid: str, environ: dict[str, Any]) -> None:
    await sio.enter_room(sid, ROOM)


app = socketio.ASGIApp(sio, socketio_path="socket.io")
