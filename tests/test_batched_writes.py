"""notifications/batched_writes.py: the acks and token uses of every socket of a process, written together."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async

from notifications import auth, batched_writes, services
from notifications.models import ApiToken, UserStream

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]


def published(user: Any, count: int) -> None:
    for i in range(count):
        services.notify(recipient_ids=[user.pk], content=services.Content(title=f"n{i}"))


def delivered(user: Any) -> int:
    return int(UserStream.objects.get(user_id=user.pk).delivered_seq)


async def test_acks_queued_together_are_one_write_and_the_highest_wins(make_user: Any) -> None:
    alice, bob = await database_sync_to_async(make_user)(), await database_sync_to_async(make_user)()
    await database_sync_to_async(published)(alice, 5)
    await database_sync_to_async(published)(bob, 3)
    writes = batched_writes.BatchedWrites()
    acks = [(alice.pk, 2), (alice.pk, 5), (alice.pk, 4), (bob.pk, 3)]
    tasks = [writes.record_ack(user_id, seq) for user_id, seq in acks]
    assert len(set(tasks)) == 1  # one flush, one write, for all of them
    await tasks[0]
    assert (await database_sync_to_async(delivered)(alice), await database_sync_to_async(delivered)(bob)) == (5, 3)


async def test_what_comes_in_during_a_write_goes_in_the_next_one(make_user: Any) -> None:
    alice = await database_sync_to_async(make_user)()
    await database_sync_to_async(published)(alice, 3)
    writes = batched_writes.BatchedWrites()
    first = writes.record_ack(alice.pk, 1)
    await asyncio.sleep(batched_writes.FLUSH_SECONDS * 2)  # the first flush has taken its batch
    second = writes.record_ack(alice.pk, 3)
    assert second is not first
    await writes.written()
    assert first.done() and second.done()
    assert await database_sync_to_async(delivered)(alice) == 3


async def test_a_failed_write_is_queued_again_and_lands_with_the_next(make_user: Any, monkeypatch: Any) -> None:
    alice = await database_sync_to_async(make_user)()
    await database_sync_to_async(published)(alice, 2)
    issued = await database_sync_to_async(auth.issue_token)(user=alice, scopes=["read"])
    real = batched_writes._write
    failures = iter([RuntimeError("database away")])

    def flaky(acks: dict[Any, int], token_uses: set[int]) -> None:
        for failure in failures:
            raise failure
        real(acks, token_uses)

    monkeypatch.setattr(batched_writes, "_write", flaky)
    writes = batched_writes.BatchedWrites()
    writes.record_ack(alice.pk, 2)
    writes.record_token_use(issued.token.pk)
    await writes.written()  # the first write failed and queued them again
    await writes.written()  # ...and the next one wrote them
    assert await database_sync_to_async(delivered)(alice) == 2
    token = await database_sync_to_async(ApiToken.objects.get)(pk=issued.token.pk)
    assert token.last_used_at is not None
