"""The hub's tasks end when it stops, even when a library swallows a cancellation."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from notifications import hub, presence


class QuietListener:
    """A hub listener with nothing to do: these tests are about the hub's own tasks."""

    def __init__(self, user_id: int) -> None:
        self.user_id, self.credential = user_id, ("token", str(user_id))

    async def push_notifications(self, items: list[tuple[int, str]], redelivery: bool) -> None: ...
    async def on_heartbeat(self, head_seq: int, unread: int, unseen: int) -> None: ...
    async def close_unauthenticated(self) -> None: ...


async def swallowing_publish(report: presence.NodeReport, client: Any) -> None:
    """What redis-py's commands do under Python 3.11 when a cancel lands as the command completes.

    asyncio.wait_for returns the finished call's result and drops the cancellation
    (fixed in 3.12): the caller goes on as if it had never been cancelled.
    """
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    this = asyncio.current_task()
    assert this is not None

    def complete_and_cancel() -> None:  # the command completes and the cancel arrives in the same turn of the loop
        done.set_result(None)
        this.cancel()

    asyncio.get_running_loop().call_soon(complete_and_cancel)
    await asyncio.wait_for(done, 15)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for keeps the cancellation from 3.12 on")
async def test_the_race_this_file_guards_against_is_real() -> None:
    task = asyncio.create_task(swallowing_publish(presence.NodeReport("n", 0, 0, 0), None))
    await task  # returned normally although it was cancelled
    assert task.cancelling() == 1


async def test_a_loop_whose_cancellation_was_swallowed_still_ends(monkeypatch: Any) -> None:
    monkeypatch.setattr(presence, "publish", swallowing_publish)
    node = hub.Hub()
    task = asyncio.create_task(node._report_loop())
    done, _ = await asyncio.wait([task], timeout=2)
    assert done, "the presence loop went on after its cancellation was swallowed"
    assert task.cancelled()


@pytest.mark.django_db(transaction=True)
async def test_a_hub_stopped_at_any_moment_ends_every_task() -> None:
    """On the Redis layer, with presence reported to Redis: stop right after start, again and again."""
    for attempt in range(20):
        node = hub.Hub()
        await node.attach(QuietListener(attempt))
        await asyncio.sleep(attempt * 0.002)  # land the stop at different points of the first report
        tasks = list(node._tasks)
        await node.stop()
        assert all(task.done() for task in tasks), f"attempt {attempt}: {[t for t in tasks if not t.done()]}"
