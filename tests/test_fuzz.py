"""Hypothesis throws client frames at one socket: an invalid frame gets an `error` (a refusing `reply` when it carried a
well-formed event id), changes nothing, and the socket stays up.

One socket for all examples (on the real Redis layer, as test_consumer's): a
frame that broke it, or left it in another state, would show in the next one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from notifications import changes, protocol, services
from notifications.models import ClientEvent, InboxEvent, Notification, Subscription, UserStream
from notifications.protocol import FrameError
from tests.test_consumer import TIMEOUT, frames_until, stop_hub, welcome  # noqa: F401 (stop_hub: an autouse fixture)

pytestmark = [pytest.mark.django_db(transaction=True)]

FRAME_TYPES = ["resume", "ack", "subscribe", "unsubscribe", "ping", *changes.OPS]
ERROR_CODES = {"bad_json", "bad_frame", "unknown_type", "invalid_field"}  # docs/protocol.md, for frames that do not parse

huge = st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**100, -1, 0, 1e308, -0.0, float("inf"), float("nan")])
scalars = st.none() | st.booleans() | st.integers() | huge | st.floats() | st.text(max_size=30)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10
)
# Objects shaped like frames: a known type (or one a client must not reach: Channels' handler names) with fields of any type.
kinds = st.sampled_from([*FRAME_TYPES, "websocket_disconnect", "websocket.receive", "_private", "push_event", "notification"])
# Event ids: well-formed ones (a refusal is then a `reply`) as often as anything else.
event_ids = st.from_regex(changes.CLIENT_ID_PATTERN, fullmatch=True) | values
filters = st.fixed_dictionaries({}, optional={key: values for key in ("topic", "kind", "up_to_seq", "archived", "when")}) | values
frame_like = st.fixed_dictionaries(
    {"type": kinds | values},
    optional={
        **{key: values for key in ("since", "seq", "ids", "all", "topic", "ref", "up_to_seq", "until")},
        "id": event_ids,
        "filter": filters,
    },
)
texts = (
    st.builds(json.dumps, frame_like)  # json.dumps, not orjson: it writes integers past 64 bits, NaN and Infinity
    | st.builds(json.dumps, values)
    | st.text(min_size=1, max_size=200)  # mostly not JSON
    | st.builds(lambda text, cut: text[: max(1, cut)], st.builds(json.dumps, frame_like), st.integers(0, 40))  # truncated
)
client_frames = st.one_of(texts.map(lambda text: ("text", text)), st.binary(min_size=1, max_size=200).map(lambda data: ("bytes", data)))


@pytest.fixture
def roomy(settings: Any) -> None:
    """No heartbeat frame between a frame and its answer, and no rate limit over hundreds of frames."""
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "HEARTBEAT_SECONDS": 3600, "CLIENT_FRAME_BURST": 10**6}


def state_of(user_id: int) -> tuple[Any, ...]:
    stream = UserStream.objects.filter(user_id=user_id).values().get()
    rows = list(
        Notification.objects.filter(recipient_id=user_id).order_by("seq").values_list("seq", "read_at", "archived_at", "snoozed_until")
    )
    events = InboxEvent.objects.filter(user_id=user_id).count(), ClientEvent.objects.filter(user_id=user_id).count()
    return stream, rows, events, Subscription.objects.filter(user_id=user_id).count()


@pytest.fixture
async def socket(user: Any, roomy: None) -> AsyncIterator[tuple[Any, tuple[Any, ...]]]:
    """A live socket that was sent and acked three notifications (one read), and the user's state then."""
    for title in ("one", "two", "three"):
        await database_sync_to_async(services.notify)(recipient_ids=[user.id], content=services.Content(title=title))
    first = await database_sync_to_async(lambda: Notification.objects.get(recipient=user, seq=1).id)()
    await database_sync_to_async(services.mark_read)(user_id=user.id, ids=[first])
    ws, _ = await welcome(user, query="since=0")
    await frames_until(ws, "synced")
    await ws.send_json_to({"type": "ack", "seq": 2, "ref": "acked"})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "reply", "ref": "acked", "ok": True}
    yield ws, await database_sync_to_async(state_of)(user.id)
    await ws.disconnect()


def expected_error(kind: str, frame: str | bytes) -> dict[str, Any]:
    """The error frame an invalid frame must get; a frame that parses is not for this test."""
    if kind == "bytes":
        return {"type": "error", "code": "bad_frame"}
    assert isinstance(frame, str)
    try:
        protocol.parse(frame)
    except FrameError as e:
        if e.id is not None:  # a change with a well-formed id is always answered by a reply
            return {"type": "reply", "ok": False, "error": e.code, "message": e.message, "id": e.id, "ref": e.ref}
        return {"type": "error", "code": e.code, "message": e.message, **({"ref": e.ref} if e.ref is not None else {})}
    assume(False)  # a valid frame may change state: not what this test is about
    raise AssertionError("unreachable")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frame=client_frames)
async def test_an_invalid_frame_gets_an_error_changes_nothing_and_the_socket_stays_up(
    socket: tuple[Any, tuple[Any, ...]], user: Any, caplog: Any, frame: tuple[str, str | bytes]
) -> None:
    ws, before = socket
    kind, data = frame
    expected = expected_error(kind, data)
    caplog.set_level(logging.ERROR)
    await ws.send_to(**{f"{kind}_data": data})
    answer = await ws.receive_json_from(timeout=TIMEOUT)
    assert answer.get("code", answer.get("error")) in ERROR_CODES
    assert {key: answer[key] for key in expected} == expected and isinstance(answer["message"], str)
    await ws.send_json_to({"type": "ping", "ref": "alive"})
    assert await ws.receive_json_from(timeout=TIMEOUT) == {"type": "pong", "ref": "alive"}
    assert await database_sync_to_async(state_of)(user.id) == before
    assert not caplog.records, [r.getMessage() for r in caplog.records]
