"""The Server-Sent Events transport: the socket's frames over plain HTTP, for networks that block WebSockets.

An EventStream is a SyncedConnection (connection.py), served by the process's
hub like a socket: the same frames in the same order, the same replay, acks
and slow-consumer rule. What differs is the wire: each frame is an SSE event
whose `id:` is the highest seq it carries, so a browser's own reconnect sends
`Last-Event-ID` and resumes there; the client's frames come as POSTs
(api/stream.py), which find their stream here by the id its `welcome` gave.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import AsyncGenerator

from . import auth, lifecycle, protocol, users
from .connection import SyncedConnection

# A browser's own reconnect waits this long (the SSE `retry:` field); client.js does its own backoff.
RETRY_MS = 1000
DRAIN_WAIT_SECONDS = 1.0  # a draining process waits this long for its streams' last events to be written

_streams: dict[str, EventStream] = {}  # this process's open streams, by id


class EventStream(SyncedConnection):
    labels_seqs = True

    def __init__(self, *, batching: bool) -> None:
        self.id = secrets.token_urlsafe(16)  # 128 bits: the id is what an ack or resume POST presents (api/stream.py)
        self.init_sync(batching=batching)
        # Unbounded, but only by count: sent and unacked frames are bounded by the
        # slow-consumer rule (SocketSync.buffer_frames), which closes the stream past it.
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.ended = asyncio.Event()

    async def open(self, handshake: auth.Handshake, since: int | None, problem: str | None) -> None:
        """Attach to the hub as the handshake's user, then welcome and replay: queued until the response is served."""
        self._out.put_nowait(f"retry: {RETRY_MS}\n\n".encode())
        _streams[self.id] = self
        lifecycle.on_stop(drain)
        state = await self.attach(handshake)
        await self.start(state, since, problem, stream=self.id)

    async def body(self) -> AsyncGenerator[bytes, None]:
        """The response: events as they are queued, until the stream closes or the client goes (Django cancels us)."""
        try:
            while True:
                parts = [await self._out.get()]
                while not self._out.empty():
                    parts.append(self._out.get_nowait())
                if None in parts:
                    yield b"".join(p for p in parts[: parts.index(None)] if p is not None)
                    return
                yield b"".join(p for p in parts if p is not None)
        finally:
            self.stop()
            self.ended.set()

    def stop(self) -> None:
        super().stop()
        _streams.pop(self.id, None)

    async def send_frame(self, text: str, *, seq: int | None = None) -> None:
        if not self.closed:
            label = f"id: {seq}\n" if seq is not None else ""
            self._out.put_nowait(f"{label}data: {text}\n\n".encode())

    async def close_with(self, code: int, *, retry_ms: int | None = None) -> None:
        """End the stream with a `close` event saying why (the socket's close code), then end the response."""
        if self.closed:
            return
        hint = f"retry: {retry_ms}\n" if retry_ms is not None else ""
        self._out.put_nowait(f'{hint}event: close\ndata: {{"code":{code}}}\n\n'.encode())
        self._out.put_nowait(None)
        self.stop()


def held(stream_id: str | None) -> EventStream | None:
    """The open stream of this id, if this process serves it (its id is its reader's to know: api/stream.py)."""
    stream = _streams.get(stream_id or "")
    return stream if stream is not None and not stream.closed else None


def find(stream_id: str | None, user_id: users.UserId) -> EventStream | None:
    """The user's stream of this id, if this process serves it."""
    stream = _streams.get(stream_id or "")
    return stream if stream is not None and stream.user_id == user_id else None


async def drain() -> None:
    """The process is stopping: end every stream with 1012, each told to come back at its own moment."""
    streams = list(_streams.values())
    spread_ms = max(1, int(streams[0].settings.drain_seconds * 1000)) if streams else 1
    for stream in streams:
        await stream.close_with(protocol.CLOSE_SERVER_RESTARTING, retry_ms=random.randint(RETRY_MS, RETRY_MS + spread_ms))
    if streams:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(s.ended.wait() for s in streams)), DRAIN_WAIT_SECONDS)
