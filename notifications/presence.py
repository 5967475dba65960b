"""Who is connected, across every server process: each hub reports, any process reads.

With REDIS_URL each process writes its figures into one Redis hash every
REPORT_SECONDS; readers drop reports older than three periods (a dead node).
On the embedded default there is one process, and the hub is read directly.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings

from .conf import redis_url
from .users import UserId, from_wire

REPORT_SECONDS = 5.0
HASH_KEY = "notifications:presence"
NODE_ID = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class NodeReport:
    node: str
    at: float
    connections: int
    pushes_sent: int
    users: dict[UserId, int] = field(default_factory=dict)


def _key() -> str:
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    prefix = layer.get("CONFIG", {}).get("prefix", "asgi")
    return f"{prefix}:{HASH_KEY}"


def encode(report: NodeReport) -> bytes:
    return orjson.dumps(
        {"at": report.at, "connections": report.connections, "pushes_sent": report.pushes_sent, "users": report.users},
        option=orjson.OPT_NON_STR_KEYS,
    )


async def publish(report: NodeReport, client: Any) -> None:
    """Called by the hub; `client` is its redis.asyncio client, or None on the embedded default."""
    _local[report.node] = report
    if client is not None:
        await client.hset(_key(), report.node, encode(report))


async def withdraw(node: str, client: Any) -> None:
    _local.pop(node, None)
    if client is not None:
        await client.hdel(_key(), node)


def async_client() -> Any:
    if not redis_url():
        return None
    import redis.asyncio

    return redis.asyncio.from_url(redis_url())


_local: dict[str, NodeReport] = {}


def reports() -> list[NodeReport]:
    """Live reports of every node (this process's own included)."""
    now = time.time()
    if not redis_url():
        raw_items: list[tuple[str, dict[str, Any]]] = [
            (r.node, {"at": r.at, "connections": r.connections, "pushes_sent": r.pushes_sent, "users": r.users}) for r in _local.values()
        ]
    else:
        import redis

        with redis.from_url(redis_url()) as client:
            raw = client.hgetall(_key())
        raw_items = [(k.decode(), orjson.loads(v)) for k, v in raw.items()]
    out = []
    for node, d in raw_items:
        if now - d["at"] <= 3 * REPORT_SECONDS:
            out.append(NodeReport(node, d["at"], d["connections"], d["pushes_sent"], {from_wire(k): v for k, v in d["users"].items()}))
    return out


def connections_total() -> int:
    return sum(r.connections for r in reports())


def connections_for(user_id: UserId) -> int:
    return sum(r.users.get(user_id, 0) for r in reports())
