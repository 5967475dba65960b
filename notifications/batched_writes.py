"""The small writes every socket of a process makes, batched: cumulative acks and tokens' last use.

One UPDATE per FLUSH_SECONDS for the whole process, not one per ack frame or
connect. The hub owns one; a socket queues into it and may await the write
(an ack with a `ref` is answered once it is stored).
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async

from . import auth, services, users

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.05  # what is queued waits at most this long to be written, together


class BatchedWrites:
    def __init__(self) -> None:
        self._acks: dict[users.UserId, int] = {}  # user -> highest acked seq, not yet written
        self._token_uses: set[int] = set()  # tokens whose last_used_at is due, not yet written
        self._flush: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()

    def record_ack(self, user_id: users.UserId, seq: int) -> asyncio.Task[None]:
        """Queue a cumulative ack; the returned task finishes once it is written (await it to confirm)."""
        if seq > self._acks.get(user_id, 0):
            self._acks[user_id] = seq
        return self._flush_soon()

    def record_token_use(self, token_id: int) -> asyncio.Task[None]:
        self._token_uses.add(token_id)
        return self._flush_soon()

    async def written(self) -> None:
        """Returns once what was queued before the call has been written (or failed and been queued again)."""
        if self._flush is not None:
            await asyncio.gather(self._flush, return_exceptions=True)
        async with self._writing:  # and a write already under way
            pass

    def _flush_soon(self) -> asyncio.Task[None]:
        if self._flush is None:
            self._flush = asyncio.create_task(self._write_batched())
        return self._flush

    async def _write_batched(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        # One write at a time: what comes in meanwhile waits, and goes in the next one together.
        async with self._writing:
            acks, self._acks = self._acks, {}
            token_uses, self._token_uses = self._token_uses, set()
            self._flush = None  # later ones start the next flush
            try:
                # Off the thread every other database call of the process shares: the
                # write may wait for a publish that holds these users' streams.
                await database_sync_to_async(_write, thread_sensitive=False)(acks, token_uses)
            except Exception:
                # Only the delivered cursor and last_used_at are late: put them back for the next flush.
                log.exception("writing %d acks failed; retrying with the next ones", len(acks))
                for user_id, seq in acks.items():
                    self.record_ack(user_id, seq)
                for token_id in token_uses:
                    self.record_token_use(token_id)


def _write(acks: dict[users.UserId, int], token_uses: set[int]) -> None:
    if acks:
        services.ack_many(acks)
    if token_uses:
        auth.record_token_use(token_uses)
