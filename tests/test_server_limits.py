"""notifications/server.py on a real process: bounded send buffers, frame size, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import time
from typing import Any

import psycopg
import pytest
import redis
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from notifications import admission, protocol, push, services
from notifications.models import ApiToken, UserStream
from tests.conftest import DaphneServer, database_url

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

TIMEOUT = 20.0


async def connect(server: DaphneServer, token: str, **options: Any) -> ClientConnection:
    ws = await websockets.connect(server.ws_url + "?batch=1", additional_headers={"Authorization": f"Bearer {token}"}, **options)
    assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "welcome"
    return ws


async def notifications_until_closed(ws: ClientConnection) -> tuple[list[int], int | None]:
    """Every notification seq the socket gets until the server closes it, and the close code."""
    seqs: list[int] = []
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            for inner in frame["frames"] if frame["type"] == "batch" else [frame]:
                if inner["type"] == "notification":
                    seqs.append(inner["seq"])
    except ConnectionClosed as closed:
        return seqs, closed.rcvd.code if closed.rcvd else None


def publish(user_id: int, count: int, body_bytes: int) -> None:
    content = services.Content(title="big", body="x" * body_bytes)
    for _ in range(0, count, 100):
        services.publish_many([services.PublishRequest([user_id], content)] * 100)


class PausedClient:
    """A WebSocket client that stops reading its socket, as a frozen tab or a stopped process does.

    Raw bytes, so nothing reads ahead on its behalf: the server's buffers are what fills.
    """

    def __init__(self, server: DaphneServer, token: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little for it
        self.sock.connect(("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws/notifications/?batch=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )

    def read_to_the_end(self) -> tuple[list[int], int | None]:
        """Wake up: read until the server's close frame; the notification seqs before it, and its code."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.settimeout(TIMEOUT)
        data = b""
        while (chunk := self.sock.recv(1 << 16)) and (found := self.frames(data := data + chunk))[1] is None:
            pass
        assert chunk, "the connection ended with no close frame"
        return found

    @staticmethod
    def frames(data: bytes) -> tuple[list[int], int | None]:
        stream = data[data.index(b"\r\n\r\n") + 4 :]
        seqs: list[int] = []
        at = 0
        while at + 2 <= len(stream):
            opcode, length, at = stream[at] & 0x0F, stream[at + 1] & 0x7F, at + 2
            if length >= 126:
                size = 2 if length == 126 else 8
                length, at = int.from_bytes(stream[at : at + size]), at + size
            if at + length > len(stream):
                break  # the rest has not come yet
            payload, at = stream[at : at + length], at + length
            if opcode == 1:
                frame = json.loads(payload)
                seqs += [f["seq"] for f in (frame["frames"] if frame["type"] == "batch" else [frame]) if f["type"] == "notification"]
            elif opcode == 8:
                return seqs, int.from_bytes(payload[:2])
        return seqs, None


async def test_a_client_that_stops_reading_is_closed_4408_with_bounded_memory_and_others_get_everything(
    daphne_factory: Any, user: Any, token_for: Any
) -> None:
    # The frame count check is out of play, as a client acking what it never read makes it.
    # The byte bound must stay above one round's frames (a batch of 100 of these is 400 kB).
    server = daphne_factory(NOTIFY_SEND_BUFFER_BYTES=str(1536 * 1024), NOTIFY_SEND_BUFFER_FRAMES="1000000")
    token = await sync_to_async(token_for)(user)
    reader = await connect(server, token)
    paused = PausedClient(server, token)

    total = 1500
    reading = asyncio.create_task(notifications_until(reader, total))
    await sync_to_async(publish)(user.id, total, 4000)
    assert await reading == list(range(1, total + 1))  # the other socket is not held up
    await wait_for_log(server, "closing a slow consumer")

    seqs, code = await asyncio.to_thread(paused.read_to_the_end)
    assert code == protocol.CLOSE_SLOW_CONSUMER
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < total  # whole frames, in order, then the close
    await reader.close()


async def wait_for_log(server: DaphneServer, text: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while text not in server.log.read_text():  # noqa: ASYNC110 (a log file has no event to await)
            await asyncio.sleep(0.05)


async def notifications_until(ws: ClientConnection, last_seq: int) -> list[int]:
    seqs: list[int] = []
    while not seqs or seqs[-1] < last_seq:
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        for inner in frame["frames"] if frame["type"] == "batch" else [frame]:
            if inner["type"] == "notification":
                seqs.append(inner["seq"])
    return seqs


@pytest.mark.parametrize(
    "frame",
    ['{"type": "ping", "pad": "' + "x" * 1100 + '"}', '{"type": "ping", "pad": "' + "✓" * 400 + '"}', b"x" * 1100],
    ids=["ascii", "multibyte", "binary"],
)
async def test_a_frame_over_the_limit_in_bytes_is_refused_by_the_server_with_1009(
    daphne_factory: Any, user: Any, token_for: Any, frame: str | bytes
) -> None:
    server = daphne_factory(NOTIFY_MAX_FRAME_BYTES="1000")
    ws = await connect(server, await sync_to_async(token_for)(user))
    await ws.send(frame)
    seqs, code = await notifications_until_closed(ws)
    assert code == protocol.CLOSE_TOO_BIG and seqs == []
    assert "Traceback" not in server.log.read_text()


def waiting_on_locks() -> int:
    with psycopg.connect(database_url(), autocommit=True) as db:
        row = db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").fetchone()
    return int(row[0]) if row else 0


async def test_while_admission_is_full_a_new_connection_waits_unread_and_comes_up_once_there_is_room(
    daphne_factory: Any, user: Any, token_for: Any
) -> None:
    """server.py: past NOTIFY_MAX_CONNECTING sockets coming up, the server stops accepting; the next waits its turn."""
    server = daphne_factory(NOTIFY_MAX_CONNECTING="2")
    token = await sync_to_async(token_for)(user)
    # Two sockets held in their token check (the tokens' table locked) fill admission.
    with psycopg.connect(database_url(), autocommit=False) as lock:
        lock.execute(f"LOCK TABLE {ApiToken._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        coming_up = [asyncio.ensure_future(connect(server, token)) for _ in range(2)]
        async with asyncio.timeout(TIMEOUT):
            while await sync_to_async(waiting_on_locks)() < 2:  # noqa: ASYNC110 (PostgreSQL has no event for it)
                await asyncio.sleep(0.05)
        third = asyncio.ensure_future(connect(server, token))
        await asyncio.sleep(2 * admission.ACCEPTED_HOLD_SECONDS)
        # Not refused, not closed, and not in the app either: it waits in the kernel's accept queue.
        assert not third.done() and not any(task.done() for task in coming_up)
        assert await sync_to_async(waiting_on_locks)() == 2
        lock.rollback()
    sockets = await asyncio.wait_for(asyncio.gather(*coming_up, third), TIMEOUT)
    for ws in sockets:
        await ws.close()
    assert "Traceback" not in server.log.read_text()


async def test_a_connection_that_never_speaks_holds_its_place_for_a_moment_only(daphne_factory: Any, user: Any, token_for: Any) -> None:
    server = daphne_factory(NOTIFY_MAX_CONNECTING="2")
    token = await sync_to_async(token_for)(user)
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        await asyncio.sleep(0.2)  # both accepted: admission counts them until their handshake comes, or for a moment
        started = time.monotonic()
        ws = await connect(server, token)
        assert time.monotonic() - started < TIMEOUT / 2
        await ws.close()
    finally:
        for sock in silent:
            sock.close()


async def test_sigterm_closes_every_socket_with_1012_spread_out_writes_acks_leaves_the_group_and_exits(
    daphne_factory: Any, make_user: Any, token_for: Any
) -> None:
    server = daphne_factory(NOTIFY_DRAIN_SECONDS="2")
    users = [await sync_to_async(make_user)() for _ in range(10)]
    sockets = [await connect(server, await sync_to_async(token_for)(u)) for u in users]
    await sync_to_async(services.notify)(recipient_ids=[u.id for u in users], content=services.Content(title="hello"))
    for ws in sockets:
        assert (await notifications_until(ws, 1)) == [1]
        await ws.send(json.dumps({"type": "ack", "seq": 1}))  # no ref: written in the hub's next batch
    channel_layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    group = f"{channel_layer['CONFIG']['prefix']}:group:{push.NODES_GROUP}"
    groups = redis.Redis.from_url(settings.REDIS_URL)
    # The server's channel joined last (the test session's own hubs may have joined before).
    server_channel: Any = groups.zrange(group, -1, -1)[0]  # scores are when each joined

    assert server.proc is not None
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)

    async def closed(ws: ClientConnection) -> tuple[float, int | None]:
        _, code = await notifications_until_closed(ws)
        return time.monotonic(), code

    closes = await asyncio.gather(*(closed(ws) for ws in sockets))
    assert {code for _, code in closes} == {protocol.CLOSE_SERVER_RESTARTING}
    assert max(t for t, _ in closes) - min(t for t, _ in closes) > 0.5  # spread, not all in one instant
    with pytest.raises(OSError):
        await websockets.connect(server.ws_url, open_timeout=2)  # no longer accepting
    assert await asyncio.to_thread(server.proc.wait, 10) == 0
    assert time.monotonic() - started < 10
    streams = UserStream.objects.filter(user_id__in=[u.id for u in users])
    assert await sync_to_async(lambda: sorted(streams.values_list("delivered_seq", flat=True)))() == [1] * len(users)
    assert groups.zscore(group, server_channel) is None  # it left the group


async def test_a_heartbeat_that_lands_while_a_protocol_error_closes_the_socket_logs_nothing(
    daphne_factory: Any, user: Any, token_for: Any
) -> None:
    """A bad opcode closes 1002; until the close handshake ends, the socket is closing, and a heartbeat skips it quietly."""
    server = daphne_factory(NOTIFY_HEARTBEAT_SECONDS="1")
    token = await sync_to_async(token_for)(user)
    clients = [PausedClient(server, token) for _ in range(8)]
    for client in clients:
        client.sock.settimeout(TIMEOUT)
        assert b"welcome" in client.sock.recv(1 << 16)

    async def violate(client: PausedClient, delay: float) -> int | None:
        await asyncio.sleep(delay)  # spread over a heartbeat period, so one lands in some socket's close
        client.sock.sendall(bytes([0x80 | 0x3, 0x80]) + os.urandom(4))  # FIN, reserved opcode 3, masked, empty
        data = b"HTTP/1.1 101\r\n\r\n"
        while (found := PausedClient.frames(data))[1] is None:
            data += await asyncio.to_thread(client.sock.recv, 1 << 16)
        await asyncio.sleep(1.5)  # the close frame is never answered: the server stays in its close handshake
        client.sock.close()
        return found[1]

    codes = await asyncio.gather(*(violate(client, i / len(clients)) for i, client in enumerate(clients)))
    assert codes == [1002] * len(clients)
    await asyncio.sleep(1.5)  # the heartbeats after the last close
    log = server.log.read_text()
    assert "heartbeat" not in log and "Traceback" not in log, log[-3000:]
