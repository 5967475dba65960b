"""Inbox state over the socket, through the real ASGI stack and the Redis layer: the frames, their ids, their events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async

from notifications import hub, services
from notifications.changes import Change
from notifications.models import ClientEvent, InboxEvent, Notification
from tests.test_consumer import TIMEOUT, frames_until, welcome

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
async def stop_hub() -> AsyncIterator[None]:
    yield
    await hub.hub().stop()


async def publish(user: Any, n: int, **content: Any) -> list[int]:
    def run() -> list[int]:
        results = [services.notify(recipient_ids=[user.id], content=services.Content(title=f"n{i}", **content)) for i in range(n)]
        return [r.deliveries[0].id for r in results]

    return await database_sync_to_async(run)()


async def next_of(ws: Any, kind: str) -> dict[str, Any]:
    """The next frame of this type (heartbeats and the like may come between)."""
    return (await frames_until(ws, kind))[-1]


async def test_every_op_is_answered_by_its_id_and_reaches_every_device_as_a_state_event(user: Any) -> None:
    ids = await publish(user, 4)
    phone, _ = await welcome(user)
    laptop, _ = await welcome(user)
    until = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    frames: list[dict[str, Any]] = [
        {"type": "read", "ids": [ids[0]], "id": "e1"},
        {"type": "unread", "ids": [ids[0]], "id": "e2", "ref": 2},
        {"type": "seen", "up_to_seq": 4, "id": "e3"},
        {"type": "archive", "ids": [ids[1]], "id": "e4"},
        {"type": "unarchive", "filter": {}, "id": "e5"},
        {"type": "snooze", "ids": [ids[2]], "until": until, "id": "e6"},
        {"type": "delete", "ids": [ids[3]], "id": "e7"},
        {"type": "archive", "filter": {"kind": "message"}, "id": "e8"},
    ]
    for seq, frame in enumerate(frames, 5):
        await phone.send_json_to(frame)
        reply = await next_of(phone, "reply")
        assert (reply["id"], reply["ref"], reply["ok"]) == (frame["id"], frame.get("ref"), True)
        assert (reply["op"], reply["seq"]) == (frame["type"], seq)
        event = await next_of(laptop, "state")
        assert (event["seq"], event["op"], event["head_seq"]) == (seq, frame["type"], seq)
        assert (event["unread"], event["unseen"]) == (reply["unread"], reply["unseen"])
    assert event == {
        "type": "state", "seq": 12, "op": "archive", "filter": {"kind": "message"}, "up_to_seq": 11,
        "unread": 0, "unseen": 0, "head_seq": 12,
    }  # fmt: skip
    assert await database_sync_to_async(lambda: Notification.objects.filter(archived_at__isnull=False).count())() == 2
    await phone.disconnect()
    await laptop.disconnect()


async def test_a_repeated_id_is_answered_again_and_applied_once(user: Any) -> None:
    (a,) = await publish(user, 1)
    ws, _ = await welcome(user)
    await ws.send_json_to({"type": "read", "ids": [a], "id": "same"})
    # The reply and the state event travel apart (the event through the hub): either may come first.
    answered = await frames_until(ws, "reply")
    first = answered[-1]
    state = next((f for f in answered if f["type"] == "state"), None) or await next_of(ws, "state")
    assert state["seq"] == 2
    await ws.send_json_to({"type": "unread", "ids": [a], "id": "later"})
    await next_of(ws, "reply")
    await ws.send_json_to({"type": "read", "ids": [a], "id": "same", "ref": "again"})
    again = await next_of(ws, "reply")
    assert again == {**first, "ref": "again", "repeated": True, "unread": 1, "unseen": 1, "head_seq": 3}
    assert await database_sync_to_async(lambda: Notification.objects.get(id=a).read_at)() is None
    assert await database_sync_to_async(lambda: (InboxEvent.objects.count(), ClientEvent.objects.count()))() == (2, 2)
    await ws.disconnect()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"type": "archive", "id": "x"}, "'archive' needs one of 'ids' or 'filter'"),
        ({"type": "archive", "all": True, "id": "x"}, "'archive' needs one of 'ids' or 'filter'"),
        ({"type": "read", "ids": [1], "all": True, "id": "x"}, "'read' needs one of 'ids', 'filter' or 'all': true"),
        ({"type": "delete", "filter": {"when": 1}, "id": "x"}, "'filter' takes topic, kind, up_to_seq and archived, not 'when'"),
        ({"type": "read", "filter": {"kind": "a b"}, "id": "x"}, "'filter.kind' must be a kind or the start of one"),
        ({"type": "snooze", "ids": [1], "until": "2020-01-01T00:00:00+00:00", "id": "x"}, "'until' must be in the future"),
        ({"type": "snooze", "ids": [1], "until": "2999-01-01T00:00:00+00:00", "id": "x"}, "'until' must be at most 365 days ahead"),
        ({"type": "snooze", "ids": [1], "until": "2027-01-01T00:00:00", "id": "x"}, "'until' needs a UTC offset"),
        ({"type": "seen", "id": "x"}, "'up_to_seq' must be a non-negative integer"),
        ({"type": "unread", "ids": list(range(1, 1002)), "id": "x"}, "at most 1000 ids per frame"),
    ],
)
async def test_a_bad_command_with_an_id_gets_a_refusing_reply_and_the_socket_stays_up(
    user: Any, frame: dict[str, Any], message: str
) -> None:
    ws, _ = await welcome(user)
    await ws.send_json_to(frame)
    assert await ws.receive_json_from(timeout=TIMEOUT) == {
        "type": "reply", "ref": None, "ok": False, "error": "invalid_field", "message": message, "id": "x",
    }  # fmt: skip
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    await ws.disconnect()


async def test_a_bad_id_is_an_error_frame_with_the_ref(user: Any) -> None:
    ws, _ = await welcome(user)
    for bad in ("", "x" * 65, "with space", 7, "é"):
        await ws.send_json_to({"type": "read", "all": True, "id": bad, "ref": "r"})
        assert await ws.receive_json_from(timeout=TIMEOUT) == {
            "type": "error", "code": "invalid_field", "message": "'id' must be 1-64 characters of letters, digits and . _ : -", "ref": "r",
        }  # fmt: skip
    await ws.disconnect()


async def test_a_device_that_was_away_replays_state_events_merged_with_notifications(user: Any) -> None:
    ids = await publish(user, 2)

    def meanwhile() -> None:
        services.mark_read(user_id=user.id, ids=[ids[0]])  # seq 3
        services.notify(recipient_ids=[user.id], content=services.Content(title="later"))  # seq 4
        services.change_inbox(user_id=user.id, change=Change("archive", ids=(ids[1],)))  # seq 5

    await database_sync_to_async(meanwhile)()
    ws, _ = await welcome(user, query="since=1&batch=1")
    frames = await frames_until(ws, "synced")
    assert frames[0]["type"] == "read_state"
    (batch,) = [f for f in frames if f["type"] == "batch"]
    assert [(f["type"], f["seq"]) for f in batch["frames"]] == [("notification", 2), ("state", 3), ("notification", 4), ("state", 5)]
    assert frames[-1] == {"type": "synced", "head_seq": 5, "replayed": 4, "more": False}
    await ws.disconnect()


async def test_a_woken_snooze_arrives_live_at_a_new_seq(user: Any) -> None:
    (a,) = await publish(user, 1)
    ws, _ = await welcome(user)
    until = datetime.now(UTC) + timedelta(minutes=5)
    await ws.send_json_to({"type": "snooze", "ids": [a], "until": until.isoformat(), "id": "s"})
    assert (await next_of(ws, "state"))["until"] == until.isoformat()
    assert await database_sync_to_async(services.wake)(user_id=user.id, now=until) == 1
    woken = await next_of(ws, "notification")
    assert (woken["id"], woken["seq"], woken["read"]) == (a, 3, False)
    await ws.disconnect()
