"""The publisher process: publishes to one peer the way that peer's own users would.

`python -m bench.publisher KIND`; one JSON command a line on stdin, one JSON
answer a line on stdout, like the load generator.

  ours      services.publish_to_topic in this process (Django set up with the
            same DATABASE_URL / REDIS_URL / CHANNEL_PREFIX as the daphne under
            test): rows stored, sequences advanced, committed, then one
            group_send per 500 recipients to the nodes group. The service call
            runs in a worker thread of this process's event loop, as a view
            does under ASGI, so the channel layer's Redis connection is reused.
            The replay's and the storm's missed notifications go through
            services.publish_many, many requests per transaction.
  channels  channel_layer.group_send(group, ...) through channels-redis
  socketio  AsyncRedisManager(write_only=True).emit(..., room=...)
  bare      a text frame on the server's /publish socket; the server broadcasts it

Every notification carries `n` (its index in the burst) and `t`, this process's
monotonic clock just before the publish call.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

BODY = "A build finished on main: 142 tests passed, 0 failed, coverage 91%."
STORM_CHUNK = 2500  # users per transaction in the storm's publish: 25,000 rows of 10 notifications each (~10,000 rows/s here)

Publish = Callable[[int, float], Awaitable[None]]


def frame(n: int, t: float) -> dict[str, Any]:
    """The peers' notification: the same fields and about the same size as the service's frame."""
    return {
        "type": "notification", "seq": n, "id": n, "topic": "bench", "kind": "message", "title": f"bench {n}",
        "body": BODY, "n": n, "t": t, "url": "", "level": "info", "created_at": "2026-01-01T00:00:00Z", "read": False,
    }  # fmt: skip


async def ours(args: dict[str, Any]) -> tuple[Publish, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from asgiref.sync import sync_to_async

    from notifications import services
    from notifications.models import Topic

    topics: dict[str, Topic] = {}

    def publish_sync(slug: str, n: int, t: float) -> None:
        if slug not in topics:
            topics[slug] = Topic.objects.get(slug=slug)
        content = services.Content(title=f"bench {n}", body=BODY, data={"n": n, "t": t})
        services.publish_to_topic(topic=topics[slug], content=content)

    publish_async = sync_to_async(publish_sync, thread_sensitive=True)
    slug = args["topic"]

    async def publish(n: int, t: float) -> None:
        await publish_async(slug, n, t)

    def missed_sync(user_id: int, count: int) -> int:
        """Store `count` notifications for one user in one transaction (the user is offline)."""
        requests = [
            services.PublishRequest([user_id], services.Content(title=f"missed {i}", body=BODY, data={"n": i, "t": 0.0}))
            for i in range(count)
        ]
        results = services.publish_many(requests)
        return results[0].deliveries[0].seq - 1

    def storm_sync(user_ids: list[int], count: int) -> int:
        """`count` notifications to each user, a chunk of users per transaction (the server is down: no one is pushed to)."""
        rows = 0
        for start in range(0, len(user_ids), STORM_CHUNK):
            chunk = user_ids[start : start + STORM_CHUNK]
            contents = [services.Content(title=f"storm {i}", body=BODY, data={"n": i, "t": 0.0}) for i in range(count)]
            requests = [services.PublishRequest(chunk, content) for content in contents]
            rows += sum(len(r.deliveries) for r in services.publish_many(requests))
        return rows

    async def extra(cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["cmd"] == "missed":
            since = await sync_to_async(missed_sync, thread_sensitive=True)(int(cmd["user"]), int(cmd["n"]))
            return {"since": since}
        if cmd["cmd"] == "storm":
            t0 = time.monotonic()
            rows = await sync_to_async(storm_sync, thread_sensitive=True)([int(u) for u in cmd["users"]], int(cmd["n"]))
            return {"rows": rows, "seconds": time.monotonic() - t0}
        if cmd["cmd"] == "topic":
            nonlocal slug
            slug = cmd["topic"]
            return {"topic": slug}
        return {"error": f"unknown command {cmd['cmd']!r}"}

    return publish, extra


async def channels(args: dict[str, Any]) -> tuple[Publish, None]:
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[args["redis"]], prefix=args["prefix"], capacity=1000, expiry=60)

    async def publish(n: int, t: float) -> None:
        await layer.group_send("bench", {"type": "bench.notification", "frame": frame(n, t)})

    return publish, None


async def socketio_peer(args: dict[str, Any]) -> tuple[Publish, None]:
    import socketio

    manager = socketio.AsyncRedisManager(args["redis"], channel=args["prefix"] + ":sio", write_only=True)

    async def publish(n: int, t: float) -> None:
        await manager.emit("notification", frame(n, t), room="bench", namespace="/")

    return publish, None


async def bare(args: dict[str, Any]) -> tuple[Publish, None]:
    from websockets.asyncio.client import connect

    assert args["url"].startswith("ws://127.0.0.1:")
    ws = await connect(args["url"], compression=None, ping_interval=None)

    async def publish(n: int, t: float) -> None:
        await ws.send(orjson.dumps(frame(n, t)).decode())

    return publish, None


PEERS = {"ours": ours, "channels": channels, "socketio": socketio_peer, "bare": bare}


async def burst(publish: Publish, first: int, count: int) -> dict[str, Any]:
    """`count` publishes back to back, as fast as this publisher can."""
    t0 = time.monotonic()
    for n in range(first, first + count):
        await publish(n, time.monotonic())
    return {"t0": t0, "t1": time.monotonic()}


async def paced(publish: Publish, first: int, rate: float, seconds: float) -> dict[str, Any]:
    """`rate` publishes a second on a fixed schedule (not drifting with publish time) for `seconds`."""
    count = int(rate * seconds)
    t0 = time.monotonic()
    calls = []
    for i in range(count):
        await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
        start = time.monotonic()
        await publish(first + i, start)
        calls.append(time.monotonic() - start)
    return {"t0": t0, "t1": time.monotonic(), "count": count, "call_ms_max": max(calls, default=0) * 1000}


async def main() -> None:
    args = orjson.loads(sys.argv[1])
    publish, extra = await PEERS[args["kind"]](args)
    print(orjson.dumps({"ready": True}).decode(), flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        cmd = orjson.loads(line)
        try:
            if cmd["cmd"] == "burst":
                reply = await burst(publish, int(cmd["first"]), int(cmd["count"]))
            elif cmd["cmd"] == "paced":
                reply = await paced(publish, int(cmd["first"]), float(cmd["rate"]), float(cmd["seconds"]))
            elif cmd["cmd"] == "close":
                print(orjson.dumps({"closed": True}).decode(), flush=True)
                break
            elif extra is not None:
                reply = await extra(cmd)
            else:
                reply = {"error": f"unknown command {cmd['cmd']!r}"}
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"[:500]}
        print(orjson.dumps(reply).decode(), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
