"""End to end on real daphne processes, the Redis channel layer, PostgreSQL and a real WebSocket client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async

from notifications import changes, fields, services
from notifications.changes import Change
from notifications.client import Inbox, Item
from notifications.client import Notification as ClientNotification
from notifications.client.inbox import Count
from notifications.frames import notification_frame
from notifications.models import Notification, Topic, UserStream
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
    assert await laptop.next() == {"type": "state", "seq": 4, "op": "read", "ids": ids[:2], "unread": 1, "unseen": 3, "head_seq": 4}
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
    """What a client holds: its notifications with every change applied, its cursor, its unread and unseen counts.

    Frames are applied by the Python client's rules (notifications/client/inbox.py; client.js keeps the
    same, tests/test_state_rule.py): initial state + every frame must equal a fresh load.
    """

    def __init__(self, items: dict[int, Item], *, unread: int, unseen: int, cursor: int, seen_seq: int) -> None:
        self.inbox = Inbox(limit=10**6)
        self.inbox.items, self.inbox.seen_seq, self.cursor = items, seen_seq, cursor
        self.counts = (Count("unread"), Count("unseen"))
        self.counts[0].restart(cursor, unread)
        self.counts[1].restart(cursor, unseen)

    @property
    def unread(self) -> int:
        return self.counts[0].value

    @property
    def unseen(self) -> int:
        return self.counts[1].value

    def view(self) -> dict[int, tuple[int, str, bool, str, str | None]]:
        """id -> (seq, title, read, where it is, the answer that stands): what a page shows of each."""
        return {i.id: (i.seq, i.notification.title, i.notification.read, i.view, i.answer) for i in self.inbox.items.values()}

    def apply(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "batch":
            for inner in frame["frames"]:
                self.apply(inner)
        elif kind in ("notification", "state"):
            if frame["seq"] <= self.cursor:
                return  # a duplicate: a replay and a live push overlapped
            self.cursor = frame["seq"]
            if kind == "notification":
                n = ClientNotification.from_dict(frame)
                for count in self.counts:
                    count.taken(n)
                self.inbox.take(n)
            else:
                self._counted(frame)
                self.inbox.apply(frame)
        elif kind == "synced":
            self.cursor = max(self.cursor, frame["head_seq"])
            for count in self.counts:
                count.covered_up_to(frame["head_seq"])
        elif kind == "read_state":
            assert not frame["truncated"]
            for item in list(self.inbox.items.values()):
                if item.seq <= frame["up_to_seq"]:
                    read = item.id not in frame["unread_ids"]
                    self.inbox.items[item.id] = replace(item, notification=replace(item.notification, read=read))
            self._counted(frame)
        elif kind == "welcome":
            for count in self.counts:
                count.restart(frame["head_seq"], frame[count.field])
        elif kind in ("heartbeat", "reply"):
            self._counted(frame)

    def _counted(self, frame: dict[str, Any]) -> None:
        for count in self.counts:
            count.counted(frame)


ACTIONS: Any = [{"id": "a", "label": "A", "style": "primary"}, {"id": "b", "label": "B", "style": "secondary"}]


def fresh_load(user: Any) -> ClientState:
    """Every notification of the user, wherever it is (inbox, archive, snoozed), and the counts, as a page loads them."""
    rows = Notification.objects.filter(recipient=user).select_related("topic", "answer")
    items = {
        n.id: Item(
            ClientNotification.from_dict(notification_frame(n, n.topic.slug if n.topic else None)),
            archived=n.archived_at is not None,
            snoozed_until=n.snoozed_until.isoformat() if n.snoozed_until else None,
            answer=fields.read(n, fields.ANSWER.column),
        )
        for n in rows
    }
    s = UserStream.objects.filter(user=user).first() or UserStream(user=user)
    return ClientState(items, unread=s.unread, unseen=s.unseen, cursor=s.head_seq, seen_seq=s.seen_seq)


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
    first_ids = sorted(client.inbox.items)[:2]
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
    assert client.view() == expected.view()
    assert client.unread == expected.unread == 9
    assert client.cursor == expected.cursor == 15  # 13 notifications, 2 read marks
    await socket.close()
    await other_device.close()


class Device:
    """One device of the user: a raw protocol-v1 socket whose every frame is applied to its ClientState as it comes."""

    def __init__(self, state: ClientState) -> None:
        self.state = state
        self.socket: Socket | None = None
        self.reader: asyncio.Task[None] | None = None
        self.replies: dict[str, dict[str, Any]] = {}  # by event id
        self.sent: dict[str, dict[str, Any]] = {}  # by event id, in the order sent: an outbox

    async def connect(self, server: DaphneServer, token: str) -> None:
        self.socket = await Socket.open(server, token, since=self.state.cursor)
        self.state.apply(self.socket.welcome)
        self.reader = asyncio.create_task(self._read(self.socket))

    async def _read(self, socket: Socket) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in socket.ws:
                frame = json.loads(raw)
                self.state.apply(frame)
                if frame["type"] == "reply" and frame.get("id"):
                    # Only an answer may be refused: another stands, or its notification has none of these actions (or is gone).
                    refusable = self.sent[frame["id"]]["type"] == changes.ACTION
                    assert frame["ok"] or (refusable and frame["error"] in ("already_answered", "invalid_field", "not_found")), frame
                    self.replies[frame["id"]] = frame

    async def send(self, frame: dict[str, Any]) -> None:
        assert self.socket is not None
        self.sent[frame["id"]] = frame
        await self.socket.send(frame)

    async def send_unanswered(self) -> None:
        """What a dropped socket took with it unanswered goes again, in order (the server applies an id once)."""
        for frame in [f for event_id, f in self.sent.items() if event_id not in self.replies]:
            await self.send(frame)

    async def disconnect(self) -> None:
        assert self.socket is not None and self.reader is not None
        await self.socket.close()
        await self.reader
        self.socket = self.reader = None

    def answered(self) -> bool:
        return set(self.sent) <= set(self.replies)


async def test_every_inbox_change_in_random_order_on_three_devices_one_away_for_a_while_equals_a_fresh_load(
    daphne: DaphneServer, user: Any, token_for: Any
) -> None:
    """Initial state + every frame == a fresh load, for every op (answers to actions too), by ids and by filter, with
    repeats, publishes and wakes."""
    rng = random.Random(23)
    snoozed_until = datetime.now(UTC) + timedelta(hours=1)

    def seed() -> None:
        topic = Topic.objects.create(slug="ci", title="CI")
        for i in range(12):
            kind = rng.choice(["build.failed", "build.ok", "deploy"])
            content = services.Content(title=f"n{i}", kind=kind, topic_id=topic.id if i % 3 else None, actions=ACTIONS)
            services.notify(recipient_ids=[user.id], content=content)
        first = list(Notification.objects.filter(recipient=user).order_by("seq").values_list("id", flat=True))
        services.change_inbox(user_id=user.id, change=Change("archive", ids=(first[0],)))
        services.change_inbox(user_id=user.id, change=Change("read", ids=(first[1], first[2])))
        services.change_inbox(user_id=user.id, change=Change("seen", up_to_seq=5))

    await sync_to_async(seed)()
    token = await sync_to_async(token_for)(user)
    devices = [Device(await sync_to_async(fresh_load)(user)) for _ in range(3)]
    for device in devices:
        await device.connect(daphne, token)
    away = devices[2]

    def a_frame(k: int, device: Device) -> dict[str, Any]:
        held = list(device.state.inbox.items)
        ids = rng.sample(held, min(len(held), rng.randint(1, 3))) + ([999_999] if rng.random() < 0.1 else [])
        op = rng.choice([*changes.OPS, changes.ACTION])
        frame: dict[str, Any] = {"type": op, "id": f"event-{k}"}
        if op == changes.ACTION:
            # Answered from any device; a second, different answer is refused and changes nothing.
            frame |= {
                "seq": device.state.inbox.items[ids[0]].seq if ids and ids[0] in device.state.inbox.items else 1,
                "action": rng.choice(["a", "b"]),
            }
        elif op == "seen":
            frame["up_to_seq"] = rng.randint(0, device.state.cursor + 2)
        elif op == "snooze":
            frame |= {"ids": ids, "until": snoozed_until.isoformat()}
        elif op in changes.BY_FILTER and rng.random() < 0.35:
            choices = {
                "topic": "ci",
                "kind": rng.choice(["build", "deploy"]),
                "up_to_seq": rng.randint(1, device.state.cursor),
                "archived": True,
            }
            frame["filter"] = {k: v for k, v in choices.items() if rng.random() < 0.4}
        else:
            frame["ids"] = ids
        return frame

    # One answer from the first device, so the run has one that stands whatever the random ops then do to it.
    first_answer = {
        "type": changes.ACTION,
        "id": "event-answer",
        "seq": max(i.seq for i in devices[0].state.inbox.items.values()),
        "action": "a",
    }
    sent: list[dict[str, Any]] = [first_answer]
    await devices[0].send(first_answer)
    for k in range(90):
        if k == 25:
            await away.disconnect()  # gone for a while: the others go on changing things
        if k == 65:
            await away.connect(daphne, token)  # back: it catches up with the cursor it had
            await away.send_unanswered()
        online = [d for d in devices if d.socket is not None]
        device = rng.choice(online)
        roll = rng.random()
        if roll < 0.1 and sent:
            await device.send(rng.choice(sent))  # a repeat, maybe from another device: applied once
        elif roll < 0.2:
            await anotify(user, f"published {k}")
        elif roll < 0.25:
            await sync_to_async(services.wake)(user_id=user.id, now=snoozed_until)  # every snooze so far comes back
        else:
            frame = a_frame(k, device)
            sent.append(frame)
            await device.send(frame)

    async def until(done: Callable[[], bool], what: Callable[[], object]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not done():
            assert time.monotonic() < deadline, what()
            await asyncio.sleep(0.05)

    await until(lambda: all(d.answered() for d in devices), lambda: [set(d.sent) - set(d.replies) for d in devices])
    expected = await sync_to_async(fresh_load)(user)
    await until(lambda: all(d.state.cursor >= expected.cursor for d in devices), lambda: [d.state.cursor for d in devices])
    ops = {f["type"] for f in sent}
    assert ops == {*changes.OPS, changes.ACTION} and any("filter" in f for f in sent)
    assert any(r.get("op") == changes.ACTION and r["ok"] for d in devices for r in d.replies.values())
    assert sum(1 for d in devices for r in d.replies.values() if r.get("repeated")) > 0
    for device in devices:
        assert device.state.view() == expected.view()
        assert (device.state.unread, device.state.unseen) == (expected.unread, expected.unseen)
        await device.disconnect()
