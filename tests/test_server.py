"""End to end on real daphne processes, the Redis channel layer, PostgreSQL and a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async

from notifications import selectors, services
from tests.conftest import ROOT, DaphneServer

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

TIMEOUT = 15.0


class Socket:
    """A protocol-v1 client that keeps every frame it got, for the assertions."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    @classmethod
    async def open(cls, server: DaphneServer, token: str, since: int | None = None) -> Socket:
        url = server.ws_url + (f"?since={since}" if since is not None else "")
        socket = cls(await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}))
        socket.welcome = await socket.next()
        assert socket.welcome["type"] == "welcome"
        return socket

    async def next(self) -> dict[str, Any]:
        return dict(json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT)))

    async def until(self, kind: str) -> list[dict[str, Any]]:
        frames = [await self.next()]
        while frames[-1]["type"] != kind:
            frames.append(await self.next())
        return frames

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def close(self) -> None:
        await self.ws.close()


def notify(user: Any, title: str) -> services.PublishResult:
    return services.notify(recipient_ids=[user.id], content=services.Content(title=title))


anotify = sync_to_async(notify)


async def test_live_then_missed_fifty_replayed_in_order_once(daphne: DaphneServer, user: Any, token_for: Any) -> None:
    token = await sync_to_async(token_for)(user)
    socket = await Socket.open(daphne, token)
    assert socket.welcome["head_seq"] == 0
    await anotify(user, "live one")
    frame = await socket.next()
    assert (frame["type"], frame["seq"], frame["title"]) == ("notification", 1, "live one")
    await socket.close()

    for i in range(50):
        await anotify(user, f"missed {i}")
    socket = await Socket.open(daphne, token, since=1)
    frames = await socket.until("synced")
    notes = [f for f in frames if f["type"] == "notification"]
    assert [f["seq"] for f in notes] == list(range(2, 52))
    assert [f["title"] for f in notes] == [f"missed {i}" for i in range(50)]
    assert frames[-1] == {"type": "synced", "head_seq": 51, "replayed": 50, "more": False}
    await socket.send({"type": "ping", "ref": "after"})
    assert await socket.next() == {"type": "pong", "ref": "after"}  # nothing else came: each exactly once
    await socket.close()


async def test_read_on_one_device_reaches_the_other(daphne: DaphneServer, user: Any, token_for: Any) -> None:
    ids = [(await anotify(user, f"n{i}")).deliveries[0].id for i in range(3)]
    phone = await Socket.open(daphne, await sync_to_async(token_for)(user))
    laptop = await Socket.open(daphne, await sync_to_async(token_for)(user))
    await phone.send({"type": "read", "ids": ids[:2], "ref": "r1"})
    assert await laptop.next() == {"type": "read", "ids": ids[:2], "unread": 1, "head_seq": 3}
    await phone.close()
    await laptop.close()


async def test_manage_py_notify_from_another_process_reaches_the_socket(daphne: DaphneServer, user: Any, token_for: Any) -> None:
    socket = await Socket.open(daphne, await sync_to_async(token_for)(user))
    env = daphne.env()
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "manage.py", "notify", user.username, "--title", "from the CLI", "--data", '{"build": 42}'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"user {user.id} seq 1" in result.stdout
    frame = (await socket.until("notification"))[-1]  # heartbeats (every 2 s here) may come first
    assert (frame["title"], frame["data"], frame["seq"]) == ("from the CLI", {"build": 42}, 1)
    await socket.close()


async def test_a_publish_reaches_sockets_on_every_node(daphne_factory: Any, make_user: Any, token_for: Any) -> None:
    """No sticky sessions: two server processes, one user on each, one publish."""
    first, second = daphne_factory(), daphne_factory()
    a, b = await sync_to_async(make_user)(), await sync_to_async(make_user)()
    on_first = await Socket.open(first, await sync_to_async(token_for)(a))
    on_second = await Socket.open(second, await sync_to_async(token_for)(b))
    await sync_to_async(services.notify)(recipient_ids=[a.id, b.id], content=services.Content(title="everywhere"))
    assert (await on_first.next())["title"] == "everywhere"
    assert (await on_second.next())["title"] == "everywhere"
    await on_first.close()
    await on_second.close()


class ClientState:
    """What a client holds: its inbox by id, its cursor, and the unread count. Applies frames like client.js does.

    The server's unread count covers seqs up to the head_seq sent with it; the
    client adds its own unread notifications above that.
    """

    def __init__(self, inbox: dict[int, dict[str, Any]], unread: int, cursor: int) -> None:
        self.inbox, self.cursor = inbox, cursor
        self.counted_unread, self.counted_head = unread, cursor

    @property
    def unread(self) -> int:
        return self.counted_unread + sum(1 for item in self.inbox.values() if item["seq"] > self.counted_head and not item["read"])

    def apply(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "notification":
            if frame["seq"] > self.cursor:
                self.inbox[frame["id"]] = {"seq": frame["seq"], "title": frame["title"], "read": frame["read"]}
                self.cursor = frame["seq"]
        elif kind == "read":
            for item_id, item in self.inbox.items():
                if item_id in frame.get("ids", ()) or item["seq"] <= frame.get("up_to_seq", 0):
                    item["read"] = True
        elif kind == "read_state":
            assert not frame["truncated"]
            for item_id, item in self.inbox.items():
                if item["seq"] <= frame["up_to_seq"]:
                    item["read"] = item_id not in frame["unread_ids"]
        elif kind == "synced":
            self.cursor = max(self.cursor, frame["head_seq"])
        if "unread" in frame and "head_seq" in frame:
            self.counted_unread, self.counted_head = frame["unread"], frame["head_seq"]


def fresh_load(user: Any) -> ClientState:
    rows = selectors.inbox(user.id, limit=1000)
    state = selectors.stream_state(user.id)
    return ClientState({n.id: {"seq": n.seq, "title": n.title, "read": n.read_at is not None} for n in rows}, state.unread, state.head_seq)


async def test_initial_state_plus_every_frame_equals_a_fresh_load(daphne: DaphneServer, user: Any, token_for: Any) -> None:
    """The heart of it: across live pushes, reads on another device, a disconnect and a resume."""
    for i in range(5):
        await anotify(user, f"before {i}")
    client = await sync_to_async(fresh_load)(user)
    other_device = await Socket.open(daphne, await sync_to_async(token_for)(user))
    socket = await Socket.open(daphne, await sync_to_async(token_for)(user), since=client.cursor)
    client.apply(socket.welcome)
    for frame in await socket.until("synced"):
        client.apply(frame)

    live = [(await anotify(user, f"live {i}")).deliveries[0].id for i in range(3)]
    for _ in live:
        client.apply(await socket.next())
    first_ids = sorted(client.inbox)[:2]
    await other_device.send({"type": "read", "ids": [first_ids[0], live[0]]})
    client.apply(await socket.next())
    await socket.close()

    # Away: new notifications, and reads of things this client already holds.
    for i in range(4):
        await anotify(user, f"while away {i}")
    await other_device.send({"type": "read", "ids": [first_ids[1], live[2]], "ref": "x"})
    await other_device.until("reply")

    socket = await Socket.open(daphne, await sync_to_async(token_for)(user), since=client.cursor)
    client.apply(socket.welcome)
    for frame in await socket.until("synced"):
        client.apply(frame)
    await anotify(user, "after resume")
    # The other device's read may reach this socket too, if the hub sent it in a later round: it changes nothing.
    for frame in await socket.until("notification"):
        client.apply(frame)

    expected = await sync_to_async(fresh_load)(user)
    assert client.inbox == expected.inbox
    assert client.unread == expected.unread == 9
    assert client.cursor == expected.cursor == 13
    await socket.close()
    await other_device.close()
