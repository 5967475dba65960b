"""The listener's outbox: inbox changes kept until the server answers them, sent in order, again after a reconnect.

Each change gets an id of its own (a UUID) when it is made; the server applies an id once
and answers every time, so sending one again after a connection dropped before its answer
applies nothing twice. One is in flight at a time: the server applies a socket's frames in
the order they come, and a change refused for a while (the database away) is sent again
before any later one, so changes are applied in the order they were made.
In memory only: a process that ends loses what was not answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

RETRY_ERRORS = {"unavailable"}  # refusals that mean "later", not "never"
RETRY_SECONDS = 1.0

Reply = dict[str, Any]


class Outbox:
    def __init__(self, *, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._send = send
        self._pending: dict[str, tuple[dict[str, Any], asyncio.Future[Reply]]] = {}  # in the order they were made
        self._in_flight: str | None = None
        self._live = False
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, frame: dict[str, Any]) -> asyncio.Future[Reply]:
        """Queue a change; the future resolves with the server's `reply` (check its `ok`)."""
        event_id = str(uuid.uuid4())
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[event_id] = ({**frame, "id": event_id}, future)
        self._kick()
        return future

    async def connected(self) -> None:
        """A socket was welcomed: send what waits, from the first."""
        self._live = True
        await self._pump()

    def disconnected(self) -> None:
        """The socket is gone: what was in flight may or may not have been applied; it goes again (the id decides)."""
        self._live = False
        self._in_flight = None

    async def answered(self, reply: Reply) -> None:
        event_id = reply.get("id")
        if event_id not in self._pending:
            return
        if event_id == self._in_flight:
            self._in_flight = None
        if not reply.get("ok") and reply.get("error") in RETRY_ERRORS:
            self._retry = asyncio.get_running_loop().call_later(RETRY_SECONDS, self._kick)
            return
        _, future = self._pending.pop(event_id)
        if not future.done():
            future.set_result(reply)
        await self._pump()

    def abandon(self) -> None:
        """The listener is closed: what was not answered never will be."""
        for _, future in self._pending.values():
            future.cancel()
        self._pending.clear()
        if self._retry is not None:
            self._retry.cancel()

    def _kick(self) -> None:
        task = asyncio.get_running_loop().create_task(self._pump())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump(self) -> None:
        if not self._live or self._in_flight is not None or not self._pending:
            return
        event_id, (frame, _) = next(iter(self._pending.items()))
        self._in_flight = event_id
        with contextlib.suppress(Exception):  # a socket closing: disconnected() sends it again on the next
            await self._send(frame)


class Changes:
    """The changes of inbox state a client makes, each through its outbox (the listener's public face for them)."""

    outbox: Outbox

    def read(self, ids: Sequence[int] = (), *, everything: bool = False, filter: dict[str, Any] | None = None) -> asyncio.Future[Reply]:
        """Mark read by ids, everything in the inbox, or by filter ({topic, kind, up_to_seq, archived}); every device hears of it."""
        return self.outbox.add(_by("read", ids, filter, everything=everything))

    def mark_unread(self, ids: Sequence[int]) -> asyncio.Future[Reply]:
        return self.outbox.add({"type": "unread", "ids": list(ids)})

    def seen(self, up_to_seq: int) -> asyncio.Future[Reply]:
        """Everything up to this seq has been seen: the unseen count drops to what is above it."""
        return self.outbox.add({"type": "seen", "up_to_seq": up_to_seq})

    def archive(self, ids: Sequence[int] = (), *, filter: dict[str, Any] | None = None) -> asyncio.Future[Reply]:
        return self.outbox.add(_by("archive", ids, filter))

    def unarchive(self, ids: Sequence[int] = (), *, filter: dict[str, Any] | None = None) -> asyncio.Future[Reply]:
        return self.outbox.add(_by("unarchive", ids, filter))

    def delete(self, ids: Sequence[int] = (), *, filter: dict[str, Any] | None = None) -> asyncio.Future[Reply]:
        """Gone for this user on every device."""
        return self.outbox.add(_by("delete", ids, filter))

    def snooze(self, ids: Sequence[int], until: datetime) -> asyncio.Future[Reply]:
        """Hidden until `until` (with a UTC offset, at most 365 days ahead); then back as new."""
        return self.outbox.add({"type": "snooze", "ids": list(ids), "until": until.isoformat()})

    def answer(self, seq: int, action: str) -> asyncio.Future[Reply]:
        """Answer the notification at `seq` with one of its actions (one without a url). The first answer,
        from any device, stands: a different later one is answered `ok: false, error: "already_answered"`
        with the `answer` that stands; every device gets the `action` state event."""
        return self.outbox.add({"type": "action", "seq": seq, "action": action})


def _by(op: str, ids: Sequence[int], filter: dict[str, Any] | None, *, everything: bool = False) -> dict[str, Any]:
    if everything:
        return {"type": op, "all": True}
    if filter is not None:
        return {"type": op, "filter": dict(filter)}
    return {"type": op, "ids": list(ids)}
