"""A node killed with SIGKILL mid-burst, again and again: every listener, on either node, gets every seq once, in order;
and a node killed after it applied a client's change but before its answer reached the client: nothing applied twice.

Two real server processes share PostgreSQL and Redis. The publisher talks to
node B, which stays up; node A is killed and restarted on the same port while
the burst goes on. The Python client (reconnect, resume from its cursor,
de-duplication by seq) is what a service listening for its users would run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from notifications import services
from notifications.client import Client, Listener
from notifications.models import ClientEvent, InboxEvent, Notification
from tests.conftest import KILLS_AGAINST_THE_CLOCK, DaphneServer
from tests.holding_proxy import HoldingProxy

pytestmark = [
    pytest.mark.server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords", "close_thread_connections"),
    KILLS_AGAINST_THE_CLOCK,
]

USERS = 6
KILLS = 6
PER_ROUND = 50  # publishes per kill; A dies halfway through each round's publishes
FAN_OUT_EVERY = 10  # every tenth publish goes to every user: several recipients in one transaction
BUDGET = 50.0  # seconds for the whole test, start-up and restarts included
TIMEOUT = 20.0


async def until(predicate: Callable[[], bool], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {TIMEOUT}s: {what()}")
        await asyncio.sleep(0.05)


def states(listeners: list[Listener], placements: list[tuple[int, DaphneServer]]) -> str:
    return ", ".join(
        f"user {uid} on {node.port}: {listener.state} at {listener.cursor}/{listener.head_seq} after {listener.connections} welcomes"
        for listener, (uid, node) in zip(listeners, placements, strict=True)
    )


async def collect(listener: Listener, into: list[int]) -> None:
    async for notification in listener:
        into.append(notification.seq)


async def test_a_node_killed_mid_burst_again_and_again_loses_and_repeats_nothing(
    daphne_factory: Any, make_user: Any, token_for: Any, record_property: Any
) -> None:
    started = time.monotonic()
    # No drain at teardown: these nodes die by SIGKILL; SIGTERM has its own test (test_server_limits).
    node_a, node_b = daphne_factory(NOTIFY_DRAIN_SECONDS="0"), daphne_factory(NOTIFY_DRAIN_SECONDS="0")
    users = [await sync_to_async(make_user)() for _ in range(USERS)]
    publisher = Client(node_b.url, await sync_to_async(token_for)(await sync_to_async(make_user)("publisher-svc"), ("publish",)))

    # Users 0-1 listen on A, 2-3 on B, 4-5 on both (a device on each node).
    placements: list[tuple[int, DaphneServer]] = []
    for i, u in enumerate(users):
        nodes = [node_a] if i < 2 else [node_b] if i < 4 else [node_a, node_b]
        placements += [(u.id, node) for node in nodes]
    # Quick reconnects: A is back on its port within a couple of seconds.
    listeners = [
        Listener(node.ws_url, token=await sync_to_async(token_for)(next(u for u in users if u.id == uid), ("read",)),
                 since=0, ack_interval=0.1, backoff_base=0.05, backoff_max=0.5)
        for uid, node in placements
    ]  # fmt: skip
    received: list[list[int]] = [[] for _ in listeners]
    collectors = [asyncio.create_task(collect(listener, into)) for listener, into in zip(listeners, received, strict=True)]
    on_a = [listener for listener, (_, node) in zip(listeners, placements, strict=True) if node is node_a]
    on_b = [listener for listener in listeners if listener not in on_a]

    expected: dict[int, list[int]] = {u.id: [] for u in users}
    published = 0

    def publish_one() -> None:
        nonlocal published
        to = [u.id for u in users] if published % FAN_OUT_EVERY == 0 else [users[published % USERS].id]
        result = publisher.publish(users=to, title=f"n{published}")
        assert result.created
        for delivery in result.notifications:
            expected[delivery.recipient].append(delivery.seq)
        published += 1

    try:
        async with asyncio.timeout(BUDGET - (time.monotonic() - started)):
            for _ in range(KILLS):
                # Each kill finds every socket connected and in step, with pushes in flight.
                await until(
                    lambda: all(listener.state == "live" for listener in listeners),
                    lambda: f"every listener live; {states(listeners, placements)}",
                )
                for _ in range(PER_ROUND // 2):
                    await asyncio.to_thread(publish_one)
                restarting = asyncio.create_task(asyncio.to_thread(node_a.restart))
                for _ in range(PER_ROUND - PER_ROUND // 2):
                    await asyncio.to_thread(publish_one)  # while A is dead or starting up
                await restarting

            def caught_up() -> bool:
                return all(len(got) >= len(expected[uid]) for got, (uid, _) in zip(received, placements, strict=True))

            await until(caught_up, lambda: f"every listener caught up; {states(listeners, placements)}")
    finally:
        for listener in listeners:
            await listener.close()
        await asyncio.gather(*collectors, return_exceptions=True)

    assert published == KILLS * PER_ROUND
    for got, (uid, node) in zip(received, placements, strict=True):
        want = expected[uid]
        assert want == list(range(1, len(want) + 1))  # the service allocated gap-free seqs
        assert got == want, f"user {uid} on port {node.port}: lost {sorted(set(want) - set(got))}, extra {len(got) - len(set(got))}"
    # Every socket on A was cut by each kill and came back; the sockets on B never were.
    assert all(listener.connections == KILLS + 1 for listener in on_a)
    assert all(listener.connections == 1 for listener in on_b)
    record_property("seconds", round(time.monotonic() - started, 1))


async def test_a_node_killed_after_applying_a_change_but_before_answering_it_applies_nothing_twice(
    daphne_factory: Any, user: Any, token_for: Any
) -> None:
    """The client's outbox keeps the change until its answer, sends it again to the restarted node: applied once."""
    node = daphne_factory(NOTIFY_DRAIN_SECONDS="0")
    (a,) = await sync_to_async(
        lambda: [d.id for d in services.notify(recipient_ids=[user.id], content=services.Content(title="x")).deliveries]
    )()
    proxy = HoldingProxy(node.port)
    listener = Listener(f"ws://127.0.0.1:{proxy.port}/ws/notifications/", token=await sync_to_async(token_for)(user, ("read",)),
                        since=0, backoff_base=0.05, backoff_max=0.5)  # fmt: skip
    try:
        async with asyncio.timeout(BUDGET):
            await until(lambda: listener.start().state == "live", lambda: f"live; {listener!r}")
            proxy.holding = True  # from here the node's frames, its answer too, wait in the proxy
            answer = listener.archive([a])

            def applied() -> bool:
                return ClientEvent.objects.filter(user=user).exists()

            # The change committed on the node, and its answer (or the event after it) reached the proxy.
            while not (await sync_to_async(applied)() and proxy.held):  # noqa: ASYNC110 - a row and a byte count: nothing to await
                await asyncio.sleep(0.02)
            assert not answer.done() and len(listener.outbox) == 1
            await asyncio.to_thread(node.kill)  # the held answer dies with the connection
            proxy.holding = False
            await asyncio.to_thread(node.start)
            reply = await answer  # sent again after the reconnect, answered by the new process
            assert reply["ok"] and reply["repeated"] and reply["op"] == "archive" and reply["seq"] == 2
            await until(lambda: a in listener.inbox.items and listener.inbox.items[a].archived, lambda: f"replayed; {listener!r}")
    finally:
        await listener.close()
        proxy.stop()

    def stored() -> tuple[int, int, bool]:
        archived = Notification.objects.get(id=a).archived_at is not None
        return InboxEvent.objects.filter(user=user).count(), ClientEvent.objects.filter(user=user).count(), archived

    assert await sync_to_async(stored)() == (1, 1, True)
    assert len(listener.outbox) == 0
