"""The `action` frame on a real daphne: the Python client's answer() on two devices (one answer stands, both hold it,
a third device replays it), and the same frame over `POST /api/v1/me/frames`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from notifications.client import Listener
from notifications.models import ActionAnswer, ClientEvent
from tests.conftest import DaphneServer
from tests.helpers import ask_to_deploy as publish
from tests.test_event_stream import post_frame

pytestmark = [
    pytest.mark.server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords", "close_thread_connections"),
]

TIMEOUT = 20.0


async def until(predicate: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in time: {what}")
        await asyncio.sleep(0.02)


async def test_two_devices_one_answer_stands_and_every_device_holds_it(daphne: DaphneServer, user: Any, token_for: Any) -> None:
    d = await sync_to_async(publish)(user)
    token = await sync_to_async(token_for)(user, ("read",))
    phone, laptop, later = (Listener(daphne.ws_url, token=token, since=0) for _ in range(3))
    try:
        for device in (phone, laptop):
            device.start()
        await until(lambda: all(x.state == "live" and d.id in x.inbox.items for x in (phone, laptop)), "both live")
        async with asyncio.timeout(TIMEOUT):
            won = await phone.answer(d.seq, "approve")
            lost = await laptop.answer(d.seq, "reject")
        assert (won["ok"], won["answer"], won["seq"], won["op"]) == (True, "approve", d.seq + 1, "action")
        assert (lost["ok"], lost["error"], lost["answer"], lost["seq"]) == (False, "already_answered", "approve", None)
        await until(lambda: all(x.inbox.items[d.id].answer == "approve" for x in (phone, laptop)), "the action event applied")
        assert all(x.inbox.items[d.id].notification.read and x.unread == 0 for x in (phone, laptop))
        # A device that was away replays the answer as the state event at its seq.
        later.start()
        await until(lambda: later.cursor == d.seq + 1, "replayed")
        assert later.inbox.items[d.id].answer == "approve"
    finally:
        for device in (phone, laptop, later):
            await device.close()
    assert await sync_to_async(lambda: (ActionAnswer.objects.count(), ClientEvent.objects.filter(op="action").count()))() == (1, 2)


def test_the_action_frame_over_post_is_answered_by_its_id_once(daphne: DaphneServer, user: Any, token_for: Any) -> None:
    d = publish(user)
    token = token_for(user, ("read",))
    status, reply = post_frame(daphne, token, {"type": "action", "seq": d.seq, "action": "reject", "id": "p1", "ref": 7})
    assert status == 200, reply
    assert {k: reply[k] for k in ("type", "ref", "id", "ok", "answer", "seq")} == {
        "type": "reply", "ref": 7, "id": "p1", "ok": True, "answer": "reject", "seq": d.seq + 1,
    }  # fmt: skip
    _, again = post_frame(daphne, token, {"type": "action", "seq": d.seq, "action": "reject", "id": "p1"})
    assert (again["ok"], again["repeated"], again["seq"]) == (True, True, d.seq + 1)
    _, refused = post_frame(daphne, token, {"type": "action", "seq": d.seq, "action": "approve", "id": "p2"})
    assert (refused["ok"], refused["error"], refused["answer"]) == (False, "already_answered", "reject")
    _, link = post_frame(daphne, token, {"type": "action", "seq": d.seq, "action": "logs", "id": "p3"})
    assert (link["ok"], link["error"], link["id"]) == (False, "invalid_field", "p3")
    _, bad = post_frame(daphne, token, {"type": "action", "seq": d.seq, "action": "Not A Slug", "id": "p4"})
    assert (bad["ok"], bad["error"], bad["message"]) == (False, "invalid_field", "'action' must be an action's id (a slug)")
    assert ActionAnswer.objects.get().action == "reject"
