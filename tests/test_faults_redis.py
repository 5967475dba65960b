"""Redis killed with SIGKILL mid-stream and restarted: publishes stored, pushes recovered, nodes back on their own.

The outage is real: a throwaway redis-server of this test's own on a free
loopback port (the machine's Redis is shared), killed and started again on the
same port with nothing in it, as after a crash of a Redis without persistence.
Two nodes use it; sockets on both stay open throughout.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from channels.layers import channel_layers

from notifications import push, services
from notifications.client import Client, Listener
from notifications.models import Notification as Row
from tests.conftest import ROOT, DaphneServer, free_port

pytestmark = [
    pytest.mark.server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords", "close_thread_connections"),
]

HEARTBEAT = 2.0  # seconds, the nodes' NOTIFY_HEARTBEAT_SECONDS
# A push lost with Redis is replayed once a heartbeat has seen its seq as the head
# and the next still finds it unsent (socket_sync.on_heartbeat): two beats at most.
RECOVERED = 2 * HEARTBEAT + 1.0
LIVE = 0.75 * HEARTBEAT  # faster than any heartbeat recovery: it came by push
REJOIN = 10.0  # the hub retries the layer with a backoff capped at 5 s
# Exceptions logged per node over a ~4 s outage: the hub's retries back off (0.1 s doubling
# to 5 s) and presence reports every 5 s, so a handful, not one per second or per socket.
HANDFUL = 10
PUSH_FAILED = "push through the channel layer failed"
TIMEOUT = 20.0


class ThrowawayRedis:
    """A redis-server on a free loopback port, no persistence: a restart comes back empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "test-artifacts" / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)

    def start(self) -> None:
        self.log.parent.mkdir(exist_ok=True)
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on {self.port}: {self.log.read_text()[-1000:]}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    if not shutil.which("redis-server"):
        if os.environ.get("CI"):
            pytest.fail("redis-server not found: install the redis-server package")
        pytest.skip("redis-server not found (set CI to make this a failure)")
    server = ThrowawayRedis()
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def nodes(throwaway_redis: ThrowawayRedis, channel_prefix: str, transactional_db: None) -> Iterator[list[tuple[DaphneServer, int]]]:
    """Two nodes on the throwaway Redis, each with where this test starts in its log (a port's log is appended to)."""
    env = {"REDIS_URL": throwaway_redis.url, "NOTIFY_HEARTBEAT_SECONDS": str(int(HEARTBEAT)), "NOTIFY_DRAIN_SECONDS": "0"}
    servers = [DaphneServer(channel_prefix, env) for _ in range(2)]
    started: list[tuple[DaphneServer, int]] = []
    try:
        for server in servers:
            offset = server.log.stat().st_size if server.log.exists() else 0
            started.append((server.start(), offset))
        yield started
    finally:
        for server in servers:
            server.stop()


async def until(predicate: Callable[[], bool], what: str, within: float = TIMEOUT) -> float:
    """Poll a condition nothing can tell us about; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_redis_killed_and_restarted_mid_stream_loses_nothing_and_nodes_rejoin_alone(
    nodes: list[tuple[DaphneServer, int]], throwaway_redis: ThrowawayRedis, channel_prefix: str,
    make_user: Any, token_for: Any, record_property: Any,
) -> None:  # fmt: skip
    (node_a, _), (node_b, _) = nodes
    users = [await sync_to_async(make_user)() for _ in range(3)]
    publisher = Client(node_b.url, await sync_to_async(token_for)(await sync_to_async(make_user)("publisher-svc"), ("publish",)))
    # User 0 listens on A (its pushes cross Redis from B, where publishes land), user 1 on B, user 2 on both.
    placements = [(users[0], node_a), (users[1], node_b), (users[2], node_a), (users[2], node_b)]
    listeners = [
        Listener(node.ws_url, token=await sync_to_async(token_for)(u, ("read",)), since=0, ack_interval=0.1) for u, node in placements
    ]
    arrivals: list[dict[int, float]] = [{} for _ in listeners]  # seq -> when the listener handed it over
    received: list[list[int]] = [[] for _ in listeners]

    async def collect(listener: Listener, seqs: list[int], at: dict[int, float]) -> None:
        async for notification in listener:
            seqs.append(notification.seq)
            at[notification.seq] = time.monotonic()

    collectors = [asyncio.create_task(collect(*args)) for args in zip(listeners, received, arrivals, strict=True)]
    published: dict[int, list[tuple[int, float]]] = {u.id: [] for u in users}  # user -> (seq, when published)

    def publish(count: int, title: str) -> None:
        for i in range(count):
            status, body = publisher.request("POST", "/notifications", {"users": [users[i % len(users)].id], "title": f"{title} {i}"})
            assert (status, body["created"]) == (201, True)  # stored, whatever Redis is doing
            for n in body["notifications"]:
                published[n["recipient"]].append((n["seq"], time.monotonic()))

    def latencies(phase: list[tuple[int, list[tuple[int, float]]]]) -> list[float]:
        return [arrivals[i][seq] - at for i, sent in phase for seq, at in sent]

    def all_arrived() -> bool:
        return all(set(received[i]) >= {seq for seq, _ in published[u.id]} for i, (u, _) in enumerate(placements))

    def phase_since(marks: dict[int, int]) -> list[tuple[int, list[tuple[int, float]]]]:
        return [(i, published[u.id][marks[u.id] :]) for i, (u, _) in enumerate(placements)]

    try:
        async with asyncio.timeout(3 * TIMEOUT):
            for listener in listeners:
                await asyncio.wait_for(listener.wait_live(), TIMEOUT)
            await asyncio.to_thread(publish, 9, "before")
            await until(all_arrived, "the pushes before the outage")

            await asyncio.to_thread(throwaway_redis.kill)
            marks = {uid: len(sent) for uid, sent in published.items()}
            await asyncio.to_thread(publish, 6, "while Redis is down")
            await until(all_arrived, "the notifications published while Redis was down", RECOVERED + TIMEOUT)
            down = latencies(phase_since(marks))

            await asyncio.to_thread(throwaway_redis.start)  # the same port, empty: no groups, no channels
            group = f"{channel_prefix}:group:{push.NODES_GROUP}"
            rejoined = await until(lambda: throwaway_redis.client().zcard(group) == 2, "both nodes back in the group", REJOIN)
            marks = {uid: len(sent) for uid, sent in published.items()}
            await asyncio.to_thread(publish, 9, "after")
            await until(all_arrived, "the pushes after the restart")
            after = latencies(phase_since(marks))
    finally:
        for listener in listeners:
            await listener.close()
        await asyncio.gather(*collectors, return_exceptions=True)

    record_property("recovered_while_down_s", round(max(down), 2))
    record_property("rejoined_s", round(rejoined, 2))
    record_property("after_restart_max_s", round(max(after), 2))
    for i, (u, _) in enumerate(placements):
        assert received[i] == [seq for seq, _ in published[u.id]]  # every seq once, in order
    assert max(down) < RECOVERED  # heartbeats found what no push carried
    assert max(after) < LIVE  # live pushes again, not heartbeat catch-up: the hubs receive from the new Redis
    assert all(listener.connections == 1 for listener in listeners)  # no socket was dropped for the outage
    assert await sync_to_async(Row.objects.filter(recipient__in=users).count)() == 24
    for node, offset in nodes:
        assert node.proc is not None and node.proc.poll() is None
        logged = logged_exceptions(node.log.read_bytes()[offset:].decode())
        record_property(f"logged_exceptions_{node.port}", dict(logged))
        assert logged[PUSH_FAILED] <= 1  # an outage is logged once, not once per publish
        assert sum(logged.values()) <= HANDFUL, f"a traceback storm on port {node.port}: {logged}"


def logged_exceptions(log: str) -> Counter[str]:
    """Exceptions logged, by message up to its first ';' (a chained exception prints several tracebacks: one record)."""
    lines = log.splitlines()
    return Counter(
        lines[i - 1].split(";")[0]
        for i, line in enumerate(lines)
        if line.startswith("Traceback (most recent") and i and lines[i - 1].strip()
    )


def test_publishing_while_redis_is_down_stores_everything_and_logs_the_outage_once(
    settings: Any, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    layer = settings.CHANNEL_LAYERS["default"]
    if not layer["BACKEND"].startswith("channels_redis"):
        pytest.skip("needs the Redis channel layer")
    # A port nothing listens on: Redis is down for this process's publishes.
    settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": [f"redis://127.0.0.1:{free_port()}/0"]}}}
    channel_layers.backends.clear()
    started = time.monotonic()
    for i in range(20):
        services.notify(recipient_ids=[user.id], content=services.Content(title=f"n{i}"))
    assert time.monotonic() - started < 10  # the publish path does not wait for Redis
    assert Row.objects.filter(recipient=user).count() == 20
    failures = [r for r in caplog.records if r.name == "notifications.push" and r.exc_info]
    assert 1 <= len(failures) <= 3
