"""Hub.dispatch alone, with fake listeners (hub.Listener is a protocol): who gets what, in which calls."""

from __future__ import annotations

from notifications import hub, push
from tests.test_consumer import FakeListener


def node_with(*listeners: FakeListener) -> hub.Hub:
    node = hub.Hub()
    for listener in listeners:
        node.listeners[listener.user_id].add(listener)
    return node


def deliver(*items: tuple[int, int, str], redelivery: bool = False) -> dict[str, object]:
    return {"type": push.DELIVER, "items": [list(item) for item in items], "redelivery": redelivery}


async def test_a_run_of_deliveries_reaches_each_socket_as_one_call_in_seq_order() -> None:
    phone, laptop, other = FakeListener(1), FakeListener(1), FakeListener(2)
    node = node_with(phone, laptop, other)
    await node.dispatch([deliver((1, 1, "a"), (2, 1, "x")), deliver((1, 2, "b")), deliver((1, 3, "c"))])
    assert phone.got == laptop.got == [[(1, "a"), (2, "b"), (3, "c")]]
    assert other.got == [[(1, "x")]]
    assert node.pushes_sent == 7


async def test_users_without_a_socket_here_cost_nothing_and_get_nothing() -> None:
    here = FakeListener(1)
    node = node_with(here)
    await node.dispatch([deliver((7, 1, "elsewhere"), (8, 4, "elsewhere too"))])
    assert here.got == [] and node.pushes_sent == 0


async def test_an_inbox_event_travels_between_notifications_as_one_of_them() -> None:
    phone = FakeListener(1)
    node = node_with(phone)
    # push.stream_events sends a `state` frame as one more item at its seq.
    await node.dispatch([deliver((1, 1, "a")), deliver((1, 2, '{"type":"state"}')), deliver((1, 3, "c"))])
    assert phone.got == [[(1, "a"), (2, '{"type":"state"}'), (3, "c")]]


async def test_redeliveries_and_first_deliveries_are_separate_calls() -> None:
    phone = FakeListener(1)
    calls: list[bool] = []
    original = phone.push_notifications

    async def pushed(items: list[tuple[int, str]], redelivery: bool) -> None:
        calls.append(redelivery)
        await original(items, redelivery)

    phone.push_notifications = pushed  # type: ignore[method-assign]
    await node_with(phone).dispatch([deliver((1, 1, "a")), deliver((1, 1, "a"), redelivery=True), deliver((1, 2, "b"))])
    assert calls == [False, True, False]
