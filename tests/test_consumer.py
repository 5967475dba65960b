"""Protocol v1 through the real ASGI stack (auth middleware, consumer, hub) on the Redis layer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.generic import websocket as websocket_consumers
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from notifications import auth, availability, frames, hub, protocol, push, selectors, services
from notifications.admission import admission
from notifications.models import ApiToken, Notification, Topic
from notifications.protocol import CLOSE_UNAVAILABLE
from project.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True)]

TIMEOUT = 5


@pytest.fixture(autouse=True)
async def stop_hub() -> AsyncIterator[None]:
    yield
    await hub.hub().stop()


@pytest.fixture
def fast(settings: Any) -> Any:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "HEARTBEAT_SECONDS": 1}
    return settings


notify = database_sync_to_async(
    lambda user, title="hi", **kw: services.notify(recipient_ids=[user.id], content=services.Content(title=title), **kw)
)


async def connect(user: Any = None, *, token: str | None = None, query: str = "", headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    if token is None and user is not None:
        token = await database_sync_to_async(lambda: auth.issue_token(user=user, scopes=["read"]).secret)()
    hdrs = list(headers or [])
    if token:
        hdrs.append((b"authorization", f"Bearer {token}".encode()))
    path = "/ws/notifications/" + (f"?{query}" if query else "")
    communicator = WebsocketCommunicator(application, path, headers=hdrs)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def welcome(user: Any, **kw: Any) -> tuple[Any, dict[str, Any]]:
    ws = await connect(user, **kw)
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "welcome"
    return ws, frame


async def frames_until(ws: Any, kind: str) -> list[dict[str, Any]]:
    out = []
    while True:
        frame = await ws.receive_json_from(timeout=TIMEOUT)
        out.append(frame)
        if frame["type"] == kind:
            return out


async def closed_with(ws: Any) -> int:
    message = await ws.receive_output(timeout=TIMEOUT)
    while message["type"] != "websocket.close":
        message = await ws.receive_output(timeout=TIMEOUT)
    return int(message["code"])


# --- auth ------------------------------------------------------------------------


async def test_anonymous_is_closed_4401() -> None:
    ws = await connect()
    assert await closed_with(ws) == 4401


async def test_bad_token_and_token_without_read_scope_are_closed_4401(user: Any) -> None:
    assert await closed_with(await connect(token="ntf_nope_nope")) == 4401
    publish_only = await database_sync_to_async(lambda: auth.issue_token(user=user, scopes=["publish"]).secret)()
    assert await closed_with(await connect(token=publish_only)) == 4401


async def test_welcome_comes_first_with_head_and_unread(user: Any) -> None:
    await notify(user)
    await notify(user)
    ws, frame = await welcome(user)
    assert frame == {"type": "welcome", "protocol": 1, "user": user.id, "head_seq": 2, "unread": 2, "unseen": 2, "heartbeat_s": 25}
    await ws.disconnect()


async def session_headers(user: Any, origin: bytes) -> list[tuple[bytes, bytes]]:
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return [(b"cookie", cookie), (b"origin", origin), (b"host", b"localhost")]


async def test_session_cookie_with_allowed_origin(user: Any) -> None:
    ws, frame = await welcome(None, headers=await session_headers(user, b"http://localhost"))
    assert frame["user"] == user.id
    await ws.disconnect()


async def test_session_cookie_from_a_foreign_origin_is_refused(user: Any) -> None:
    path = "/ws/notifications/"
    communicator = WebsocketCommunicator(application, path, headers=await session_headers(user, b"http://evil.example"))
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert not connected


async def test_ticket_is_single_use(user: Any) -> None:
    ticket = await database_sync_to_async(auth.issue_ticket)(user=user)
    ws, frame = await welcome(None, query=f"ticket={ticket}")
    assert frame["user"] == user.id
    await ws.disconnect()
    assert await closed_with(await connect(query=f"ticket={ticket}")) == 4401


async def test_revoked_token_closes_open_socket_at_heartbeat(user: Any, fast: Any) -> None:
    issued = await database_sync_to_async(auth.issue_token)(user=user, scopes=["read"])
    ws, _ = await welcome(user, token=issued.secret)
    await database_sync_to_async(auth.revoke_token)(issued.token)
    assert await closed_with(ws) == 4401


async def test_logout_closes_open_socket_at_heartbeat(user: Any, fast: Any) -> None:
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"origin", b"http://localhost"), (b"host", b"localhost")]
    ws, _ = await welcome(None, headers=headers)
    await database_sync_to_async(client.logout)()
    assert await closed_with(ws) == 4401


# --- delivery and replay ------------------------------------------------------------


async def test_live_notification_frame(user: Any) -> None:
    ws, _ = await welcome(user)
    result = await notify(user, "Build green")
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "notification"
    assert frame["seq"] == 1 and frame["id"] == result.deliveries[0].id
    assert frame["title"] == "Build green" and frame["read"] is False and frame["topic"] is None
    assert set(frame) == {"type", *frames.FIELD_NAMES} >= {"seq", "id", "topic", "title", "created_at", "read", "actions", "group_key"}
    await ws.disconnect()


async def test_since_replays_then_synced(user: Any) -> None:
    ids = [(await notify(user, f"n{i}")).deliveries[0].id for i in range(5)]
    ws, _ = await welcome(user, query="since=2")
    frames = await frames_until(ws, "synced")
    assert frames[0] == {"type": "read_state", "up_to_seq": 2, "unread_ids": ids[:2], "unread": 5, "head_seq": 5, "truncated": False}
    assert [f["seq"] for f in frames[1:-1]] == [3, 4, 5]
    assert frames[-1] == {"type": "synced", "head_seq": 5, "replayed": 3, "more": False}
    await notify(user, "live")
    assert (await ws.receive_json_from(timeout=TIMEOUT))["seq"] == 6
    await ws.disconnect()


async def test_resume_pages_with_more(user: Any, settings: Any) -> None:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "REPLAY_PAGE_SIZE": 2}
    for i in range(5):
        await notify(user, f"n{i}")
    ws, _ = await welcome(user)
    seqs: list[int] = []
    since, more = 0, True
    while more:
        await ws.send_json_to({"type": "resume", "since": since})
        frames = await frames_until(ws, "synced")
        seqs += [f["seq"] for f in frames if f["type"] == "notification"]
        more = frames[-1]["more"]
        since = seqs[-1]
    assert seqs == [1, 2, 3, 4, 5]
    await ws.disconnect()


async def test_reset_when_cursor_is_ahead_or_older_than_retention(user: Any) -> None:
    for _ in range(3):
        await notify(user)
    ws, _ = await welcome(user, query="since=10")
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "reset", "reason": "cursor_ahead", "head_seq": 3}
    await notify(user, "after the reset")  # the cursor moved to the head: live again, no second reset
    assert (await ws.receive_json_from(timeout=TIMEOUT))["seq"] == 4
    await ws.disconnect()

    def age_and_prune() -> None:
        Notification.objects.filter(recipient=user, seq__lte=2).update(created_at=timezone.now() - timedelta(days=365))
        services.prune()

    await database_sync_to_async(age_and_prune)()
    ws, _ = await welcome(user, query="since=1")
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "reset", "reason": "retention", "head_seq": 4}
    await ws.disconnect()


async def test_resume_brings_read_state_in_step_after_being_away(user: Any) -> None:
    ids = [(await notify(user, f"n{i}")).deliveries[0].id for i in range(4)]
    # While this device was away, another one read two of the four it holds: an event at seq 5.
    await database_sync_to_async(services.mark_read)(user_id=user.id, ids=[ids[0], ids[2]])
    ws, _ = await welcome(user, query="since=4")
    frames = await frames_until(ws, "synced")
    assert frames[0] == {
        "type": "read_state",
        "up_to_seq": 4,
        "unread_ids": [ids[1], ids[3]],
        "unread": 2,
        "head_seq": 5,
        "truncated": False,
    }
    assert frames[1] == {"type": "state", "seq": 5, "op": "read", "ids": [ids[0], ids[2]], "unread": 2, "unseen": 4, "head_seq": 5}
    await ws.disconnect()


async def test_dropped_push_is_replayed_by_the_server_on_a_gap(user: Any, monkeypatch: Any) -> None:
    ws, _ = await welcome(user)
    with monkeypatch.context() as m:
        m.setattr(push, "_send", lambda message: None)  # the channel layer loses seq 1's push
        await notify(user, "lost push")
    await notify(user, "next")
    frames = await frames_until(ws, "synced")
    assert [(f["seq"], f["title"]) for f in frames[:-1]] == [(1, "lost push"), (2, "next")]
    await ws.disconnect()


async def test_heartbeat_carries_head_and_repairs_a_dropped_push(user: Any, fast: Any, monkeypatch: Any) -> None:
    ws, _ = await welcome(user)
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "heartbeat", "head_seq": 0, "unread": 0, "unseen": 0}
    with monkeypatch.context() as m:
        m.setattr(push, "_send", lambda message: None)
        await notify(user, "only the database knows")
    frames = await frames_until(ws, "synced")
    assert [f.get("title") for f in frames if f["type"] == "notification"] == ["only the database knows"]
    await ws.disconnect()


async def test_redeliver_pushes_again(user: Any) -> None:
    ws, _ = await welcome(user)
    result = await notify(user)
    assert (await ws.receive_json_from(timeout=TIMEOUT))["seq"] == 1
    await database_sync_to_async(services.redeliver)([result.deliveries[0].id])
    assert (await ws.receive_json_from(timeout=TIMEOUT))["seq"] == 1
    await ws.disconnect()


async def test_slow_consumer_is_closed_4408(user: Any, settings: Any) -> None:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "SEND_BUFFER_FRAMES": 3}
    ws, _ = await welcome(user)
    for _ in range(5):
        await notify(user)
    assert await closed_with(ws) == 4408


# --- batch frames (?batch=1) -------------------------------------------------------------


async def test_a_batch_client_gets_a_replay_in_batch_frames(user: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(protocol, "BATCH_MAX_FRAMES", 3)
    for i in range(7):
        await notify(user, f"n{i}")
    ws, _ = await welcome(user, query="batch=1&since=0")
    frames = await frames_until(ws, "synced")
    assert [f["type"] for f in frames] == ["batch", "batch", "notification", "synced"]
    assert [[n["seq"] for n in f["frames"]] for f in frames[:2]] == [[1, 2, 3], [4, 5, 6]]
    assert all(n["type"] == "notification" and n["title"] == f"n{n['seq'] - 1}" for f in frames[:2] for n in f["frames"])
    assert frames[2]["seq"] == 7 and frames[3]["replayed"] == 7
    await ws.disconnect()


async def test_pushes_that_queued_up_reach_a_batch_client_in_one_frame(user: Any, monkeypatch: Any) -> None:
    batching, _ = await welcome(user, query="batch=1")
    plain, _ = await welcome(user)
    pushes: list[dict[str, Any]] = []
    with monkeypatch.context() as m:
        m.setattr(push, "_send", pushes.append)
        await notify(user, "one")
        await notify(user, "two")
    await hub.hub().dispatch(pushes)  # what the hub takes together when both arrived while it was busy
    frame = await batching.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "batch" and [(n["seq"], n["title"]) for n in frame["frames"]] == [(1, "one"), (2, "two")]
    assert [(await plain.receive_json_from(timeout=TIMEOUT))["title"] for _ in range(2)] == ["one", "two"]
    await notify(user, "three")  # one push: a plain frame for both
    assert (await batching.receive_json_from(timeout=TIMEOUT))["type"] == "notification"
    assert (await plain.receive_json_from(timeout=TIMEOUT))["seq"] == 3
    await batching.disconnect()
    await plain.disconnect()


class FakeListener:
    """A hub listener that records what it is sent, or fails on everything (as a socket already closing does)."""

    def __init__(self, user_id: int, *, fails: bool = False) -> None:
        self.user_id, self.credential, self.fails = user_id, ("token", str(user_id)), fails
        self.got: list[list[tuple[int, str]]] = []
        self.heartbeats: list[tuple[int, int, int]] = []
        self.pushed = asyncio.Event()

    def _fail_if_broken(self) -> None:
        if self.fails:
            raise RuntimeError("Attempt to send on a closed protocol")

    async def push_notifications(self, items: list[tuple[int, str]], redelivery: bool) -> None:
        self._fail_if_broken()
        self.got.append(items)
        self.pushed.set()

    async def on_heartbeat(self, head_seq: int, unread: int, unseen: int) -> None:
        self._fail_if_broken()
        self.heartbeats.append((head_seq, unread, unseen))

    async def close_unauthenticated(self) -> None:
        self._fail_if_broken()


async def test_a_socket_whose_push_fails_does_not_cost_the_others_theirs() -> None:
    node = hub.hub()
    broken, fine = FakeListener(1, fails=True), FakeListener(2)
    node.listeners[1].add(broken)
    node.listeners[2].add(fine)
    await node.dispatch([{"type": "node.deliver", "items": [[1, 1, "a"], [2, 1, "b"]]}])
    assert fine.got == [[(1, "b")]]
    node.detach(broken)
    node.detach(fine)


async def test_a_socket_that_fails_its_heartbeat_does_not_cost_the_others_theirs(monkeypatch: Any) -> None:
    node = hub.hub()
    monkeypatch.setattr(hub, "_heartbeat_state", lambda user_ids, credentials: ({1: (5, 2, 3), 2: (7, 1, 1)}, set()))
    broken, others = FakeListener(1, fails=True), [FakeListener(1), FakeListener(2)]
    for listener in (broken, *others):
        node.listeners[listener.user_id].add(listener)
    try:
        await node.beat()
        assert [listener.heartbeats for listener in others] == [[(5, 2, 3)], [(7, 1, 1)]]
    finally:
        for listener in (broken, *others):
            node.detach(listener)


async def test_pushes_that_come_in_a_burst_share_a_round() -> None:
    node = hub.hub()
    listener = FakeListener(7)
    await node.attach(listener)  # the hub reads the real channel layer
    for seq in (1, 2, 3):
        await get_channel_layer().group_send(push.NODES_GROUP, {"type": "node.deliver", "items": [[7, seq, f"n{seq}"]]})
    while sum(map(len, listener.got)) < 3:
        await asyncio.wait_for(listener.pushed.wait(), TIMEOUT)
        listener.pushed.clear()
    assert [item for call in listener.got for item in call] == [(1, "n1"), (2, "n2"), (3, "n3")]
    # A round starts at most every COALESCE_SECONDS: what comes meanwhile waits and goes together (one frame).
    assert len(listener.got) < 3
    node.detach(listener)


# --- client frames ------------------------------------------------------------------


async def test_ack_is_cumulative_and_only_for_the_sender(make_user: Any) -> None:
    a, b = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    for _ in range(3):
        await database_sync_to_async(services.notify)(recipient_ids=[a.id, b.id], content=services.Content(title="x"))
    ws, _ = await welcome(a, query="since=0")
    await frames_until(ws, "synced")
    await ws.send_json_to({"type": "ack", "seq": 2, "ref": "a1"})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "reply", "ref": "a1", "ok": True}
    delivered = await database_sync_to_async(
        lambda: sorted(Notification.objects.filter(selectors.delivered()).values_list("recipient_id", "seq"))
    )()
    assert delivered == [(a.id, 1), (a.id, 2)]
    await ws.disconnect()


async def test_read_reaches_every_device_with_unread(user: Any) -> None:
    ids = [(await notify(user, f"n{i}")).deliveries[0].id for i in range(3)]
    phone, _ = await welcome(user)
    laptop, _ = await welcome(user)
    await phone.send_json_to({"type": "read", "ids": [ids[0], 999_999], "ref": 7})
    # A state event at the next seq, pushed as a notification is: every device gets it, in seq order.
    event = {"type": "state", "seq": 4, "op": "read", "ids": [ids[0]], "unread": 2, "unseen": 3, "head_seq": 4}
    answer = {"type": "reply", "ref": 7, "ok": True, "op": "read", "seq": 4, "changed": 1, "unread": 2, "unseen": 3, "head_seq": 4}
    got = [await phone.receive_json_from(timeout=TIMEOUT) for _ in range(2)]  # the reply, and the event every device gets
    assert sorted(got, key=str) == sorted([answer, event], key=str)
    assert await laptop.receive_json_from(timeout=TIMEOUT) == event
    await laptop.send_json_to({"type": "read", "all": True})
    assert await phone.receive_json_from(timeout=TIMEOUT) == {
        "type": "state", "seq": 5, "op": "read", "filter": {}, "up_to_seq": 4, "unread": 0, "unseen": 3, "head_seq": 5,
    }  # fmt: skip
    await phone.disconnect()
    await laptop.disconnect()


async def test_read_of_another_users_id_changes_nothing(make_user: Any) -> None:
    a, b = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    theirs = (await notify(b)).deliveries[0].id
    ws, _ = await welcome(a)
    await ws.send_json_to({"type": "read", "ids": [theirs], "ref": "r"})  # nothing changes, so no event either
    assert await ws.receive_json_from(timeout=TIMEOUT) == {
        "type": "reply", "ref": "r", "ok": True, "op": "read", "seq": None, "changed": 0, "unread": 0, "unseen": 0, "head_seq": 0,
    }  # fmt: skip
    assert await database_sync_to_async(lambda: Notification.objects.get(id=theirs).read_at)() is None
    await ws.disconnect()


async def test_subscribe_and_unsubscribe(user: Any) -> None:
    await database_sync_to_async(Topic.objects.create)(slug="deploys", title="Deploys")
    ws, _ = await welcome(user)
    await ws.send_json_to({"type": "subscribe", "topic": "deploys", "ref": 1})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "reply", "ref": 1, "ok": True}
    topic = await database_sync_to_async(Topic.objects.get)(slug="deploys")
    await database_sync_to_async(services.publish_to_topic)(topic=topic, content=services.Content(title="v2"))
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert (frame["topic"], frame["title"]) == ("deploys", "v2")
    await ws.send_json_to({"type": "subscribe", "topic": "nope", "ref": 2})
    reply = await ws.receive_json_from(timeout=TIMEOUT)
    assert (reply["ok"], reply["error"]) == (False, "not_found")
    await ws.send_json_to({"type": "subscribe", "topic": "nope"})
    assert (await ws.receive_json_from(timeout=TIMEOUT))["code"] == "not_found"
    await ws.send_json_to({"type": "unsubscribe", "topic": "deploys", "ref": 3})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "reply", "ref": 3, "ok": True}
    await ws.disconnect()


async def test_ping_pong(user: Any) -> None:
    ws, _ = await welcome(user)
    await ws.send_json_to({"type": "ping", "ref": "p"})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "pong", "ref": "p"}
    await ws.disconnect()


BAD_FRAMES = [
    ("{not json", "bad_json", None),
    ("[1, 2]", "bad_frame", None),
    ('{"no": "type"}', "bad_frame", None),
    ('{"type": 5}', "bad_frame", None),
    ('{"type": "websocket_disconnect"}', "unknown_type", None),
    ('{"type": "push_notification", "ref": "x"}', "unknown_type", "x"),
    ('{"type": "resume"}', "invalid_field", None),
    ('{"type": "resume", "since": "3", "ref": 1}', "invalid_field", 1),
    ('{"type": "resume", "since": -1}', "invalid_field", None),
    ('{"type": "ack", "seq": true}', "invalid_field", None),
    ('{"type": "ack", "seq": 1.5}', "invalid_field", None),
    ('{"type": "read"}', "invalid_field", None),
    ('{"type": "read", "ids": "1,2"}', "invalid_field", None),
    ('{"type": "read", "ids": [0]}', "invalid_field", None),
    ('{"type": "read", "ids": [' + ",".join(["1"] * 1001) + "]}", "invalid_field", None),
    ('{"type": "subscribe", "topic": "../x"}', "invalid_field", None),
    ('{"type": "subscribe"}', "invalid_field", None),
    ('{"type": "ping", "ref": {"a": 1}}', "invalid_field", None),
    ('{"type": "ping", "ref": "' + "r" * 65 + '"}', "invalid_field", None),
]


@pytest.mark.parametrize(("text", "code", "ref"), BAD_FRAMES)
async def test_bad_frames_get_an_error_and_the_socket_stays_up(user: Any, text: str, code: str, ref: Any) -> None:
    ws, _ = await welcome(user)
    await ws.send_to(text_data=text)
    frame = await ws.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "error" and frame["code"] == code and frame.get("ref") == ref
    assert isinstance(frame["message"], str) and frame["message"]
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    await ws.disconnect()


async def test_binary_frame_gets_an_error(user: Any) -> None:
    ws, _ = await welcome(user)
    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await ws.receive_json_from(timeout=TIMEOUT))["code"] == "bad_frame"
    await ws.disconnect()


async def test_invalid_since_query_gets_an_error_after_welcome(user: Any) -> None:
    ws, _ = await welcome(user, query="since=abc")
    assert (await ws.receive_json_from(timeout=TIMEOUT))["code"] == "invalid_field"
    await ws.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"text_data": '{"type": "ping", "pad": "' + "x" * 200 + '"}'},
        {"text_data": '{"type": "ping", "pad": "' + "✓" * 40 + '"}'},  # 40 characters, 120 bytes
        {"bytes_data": b"x" * 101},
    ],
    ids=["ascii", "multibyte", "binary"],
)
async def test_a_frame_over_the_limit_in_bytes_closes_4009_under_another_server(user: Any, settings: Any, frame: dict[str, Any]) -> None:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "MAX_FRAME_BYTES": 100}
    ws, _ = await welcome(user)
    await ws.send_to(**frame)
    assert await closed_with(ws) == protocol.CLOSE_TOO_BIG_SEEN_BY_APP


async def test_flooding_client_is_closed_4429(user: Any, settings: Any) -> None:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "CLIENT_FRAME_BURST": 5, "CLIENT_FRAMES_PER_SECOND": 1}
    ws, _ = await welcome(user)
    for _ in range(7):
        await ws.send_json_to({"type": "ping"})
    assert await closed_with(ws) == 4429


async def test_hub_rejoins_its_group_when_membership_would_expire(user: Any, fast: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(hub, "GROUP_REFRESH_SECONDS", 0)
    ws, _ = await welcome(user)
    node = hub.hub()
    first = node.joined_at
    await ws.receive_json_from(timeout=TIMEOUT)  # a heartbeat: the refresh ran before it
    assert node.joined_at > first
    await ws.disconnect()


async def test_token_last_used_is_recorded(user: Any) -> None:
    issued = await database_sync_to_async(auth.issue_token)(user=user, scopes=["read"])
    ws, _ = await welcome(user, token=issued.secret)
    await hub.hub().writes.written()  # the hub writes last_used_at with its next batch of acks
    assert await database_sync_to_async(lambda: ApiToken.objects.get(pk=issued.token.pk).last_used_at)() is not None
    await ws.disconnect()


async def test_no_event_is_lost_while_connecting(user: Any) -> None:
    """Publish concurrently with the handshake: every seq arrives once, in order."""

    async def publish_many() -> None:
        for i in range(20):
            await notify(user, f"n{i}")

    publisher = asyncio.create_task(publish_many())
    ws, _ = await welcome(user, query="since=0")
    await publisher
    seqs: list[int] = []
    while not seqs or seqs[-1] < 20:
        frame = await ws.receive_json_from(timeout=TIMEOUT)
        if frame["type"] == "notification":
            seqs.append(frame["seq"])
    assert seqs == list(range(1, 21))
    await ws.disconnect()


async def test_a_tokens_connect_reads_its_head_with_the_token_check(user: Any, monkeypatch: Any) -> None:
    first, _ = await welcome(user)  # starts the hub: a hub younger than the read reads again
    await notify(user)
    await first.receive_json_from(timeout=TIMEOUT)

    def second_read(user_id: int) -> Any:
        raise AssertionError("the head was read again")

    monkeypatch.setattr(selectors, "stream_state", second_read)
    ws, frame = await welcome(user)
    assert (frame["head_seq"], frame["unread"]) == (1, 1)
    await first.disconnect()
    await ws.disconnect()


async def test_a_push_dispatched_between_the_token_check_and_the_attach_is_not_missed(user: Any, monkeypatch: Any) -> None:
    """The token check reads the head before the socket can attach; a push the hub dispatches meanwhile reaches no socket of it."""
    first, _ = await welcome(user)  # starts the hub
    node = hub.hub()
    check = auth.authenticate_socket_token

    def check_then_publish(secret: str) -> Any:
        token = check(secret)
        read_at = time.monotonic()
        services.notify(recipient_ids=[user.id], content=services.Content(title="between"))
        deadline = time.monotonic() + TIMEOUT
        while not node.dispatched.since(read_at, user.id):  # the hub has sent it to the sockets attached by now
            assert time.monotonic() < deadline, "the hub never dispatched the push"
            time.sleep(0.01)
        return token

    monkeypatch.setattr(auth, "authenticate_socket_token", check_then_publish)
    second, frame = await welcome(user)
    assert frame["head_seq"] == 1  # read again once attached: the client knows seq 1 is there
    assert (await first.receive_json_from(timeout=TIMEOUT))["title"] == "between"
    await first.disconnect()
    await second.disconnect()


def test_the_hub_remembers_whom_it_dispatched_to_and_is_unsure_past_its_memory(monkeypatch: Any) -> None:
    clock = [1000.0]
    monkeypatch.setattr(hub.time, "monotonic", lambda: clock[0])
    dispatched = hub.Dispatched()
    assert dispatched.since(999.0, 1)  # before the hub existed: it cannot know
    clock[0] = 1001.0
    dispatched.record({1, 2})
    assert dispatched.since(1000.5, 1) and dispatched.since(1001.0, 2)
    assert not dispatched.since(1000.5, 3)
    assert not dispatched.since(1001.5, 1)
    clock[0] = 1001.0 + hub.DISPATCHED_MEMORY_SECONDS + 1
    dispatched.record({3})
    assert dispatched.since(1000.5, 9)  # the run of 1001.0 is forgotten: unsure
    assert not dispatched.since(1001.5, 9)


async def test_a_disconnect_waits_for_no_thread(user: Any, monkeypatch: Any) -> None:
    """10,000 sockets closing at once (a drain) must not queue for the thread shared by thread-sensitive calls."""
    hops: list[str] = []

    async def close_old_connections() -> None:
        hops.append("to the shared thread")

    monkeypatch.setattr(websocket_consumers, "aclose_old_connections", close_old_connections)
    ws, _ = await welcome(user)
    await ws.disconnect()
    await ws.wait(TIMEOUT)
    assert hops == []


async def test_a_frame_that_finds_the_database_away_is_refused_and_the_socket_stays_up(user: Any, monkeypatch: Any) -> None:
    ws, _ = await welcome(user)

    def unreachable(**_: Any) -> None:
        raise availability.DatabaseUnavailable("the database is unavailable")

    monkeypatch.setattr(services, "change_inbox", unreachable)
    await ws.send_json_to({"type": "read", "all": True, "ref": 1})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {
        "type": "reply", "ref": 1, "ok": False, "error": "unavailable", "message": "the database is unavailable; try again shortly",
    }  # fmt: skip
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    await ws.disconnect()


# --- admission ------------------------------------------------------------------------


async def test_past_the_handshakes_in_progress_a_socket_is_told_to_come_back(user: Any, settings: Any) -> None:
    """After a restart every client returns at once: past the limit a handshake closes 4503 before any database work."""
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "MAX_CONNECTING": 1}
    coming_up = admission.try_enter()  # another socket still on its way up
    assert coming_up is not None
    ws = await connect(user)
    assert await closed_with(ws) == CLOSE_UNAVAILABLE
    coming_up()
    ws, _ = await welcome(user)  # once it is up, the next may come
    assert admission.connecting == 0  # released once welcome (and any replay) went out
    await ws.disconnect()
    unauthenticated = await connect()
    assert await closed_with(unauthenticated) == 4401
    assert admission.connecting == 0
