"""The WebSocket endpoint, protocol v1 (docs/protocol.md): auth, then route frames to services.

What each socket has been sent, and so what to send next, is decided by its
SocketSync (socket_sync.py); this module does the I/O it asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.utils import await_many_dispatch
from django.db import OperationalError

from . import availability, conf, hub, protocol, selectors, services
from .errors import ServiceError
from .protocol import (
    CLOSE_RATE_LIMITED,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TOO_BIG_SEEN_BY_APP,
    CLOSE_UNAUTHENTICATED,
    Ack,
    ClientFrame,
    FrameError,
    Ping,
    Read,
    Resume,
    Subscribe,
    Unsubscribe,
)
from .socket_sync import SocketSync


def _since(query: dict[str, list[str]]) -> tuple[int | None, str | None]:
    values = query.get("since")
    if not values:
        return None, None
    if not values[0].isdigit() or int(values[0]) > protocol.MAX_SEQ:
        return None, "'since' must be a non-negative integer"
    return int(values[0]), None


def _frame_bytes(text: str | None, data: bytes | None) -> int:
    if text is None:
        return len(data or b"")
    # ASCII (most frames) is one byte a character: no need to encode it to measure it.
    return len(text) if text.isascii() else len(text.encode())


class NotificationConsumer(AsyncWebsocketConsumer):
    user_id: int
    credential: tuple[str, str]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # No channel per socket: the process's hub (hub.py) fans pushes out
        # to sockets directly, so a publish costs one Redis message per process.
        self.scope = scope
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await await_many_dispatch([receive], self.dispatch)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Only the server's websocket.* events reach here (no channel, so no layer
        # messages). Channels' own name rule, with its guard against "_" types;
        # our DB calls go through database_sync_to_async, which manages connections.
        await getattr(self, get_handler_name(message))(message)

    # --- lifecycle ---------------------------------------------------------------

    async def connect(self) -> None:
        try:
            await self._connect()
        finally:
            # Up (welcome and the first replay sent) or refused: the next handshake may start (admission.py).
            self.scope.get("admitted", lambda: None)()

    async def _connect(self) -> None:
        self.settings = conf.get()
        self.closed = False
        self.sync = SocketSync(buffer_frames=self.settings.send_buffer_frames)
        self.sync_lock = asyncio.Lock()  # one replay at a time: a client's resume waits for a catch-up
        self.catch_up_task: asyncio.Task[None] | None = None
        self.tokens = float(self.settings.client_frame_burst)
        self.tokens_at = time.monotonic()
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        # Protocol addition (docs/protocol.md): a client that can read `batch` frames gets
        # a burst's pushes several to a frame (hub.COALESCE_SECONDS), and replays in few frames.
        self.batching = query.get("batch") == ["1"]

        # Set by auth.WebsocketAuthMiddleware, whichever way the socket came in.
        user_id = self.scope.get("user_id")
        if user_id is None:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user_id = user_id
        self.credential = self.scope["credential"]
        self.hub = hub.hub()
        await self.hub.attach(self)
        if self.scope.get("token_use_stale"):
            self.hub.record_token_use(int(self.credential[1]))
        # A token's check read the head too, before this socket could attach: good unless a push
        # for this user was dispatched since. Otherwise read it now, attached, so none falls between.
        state = self.scope.get("stream_state")
        if state is None or self.hub.dispatched.since(self.scope["stream_read_at"], self.user_id):
            # Any worker thread, not the one shared by every DB call of the process: connects in parallel.
            state = await database_sync_to_async(selectors.stream_state, thread_sensitive=False)(self.user_id)
        await self.accept()
        await self.send(
            protocol.welcome(
                user_id=self.user_id, head_seq=state.head_seq, unread=state.unread, heartbeat_s=self.settings.heartbeat_seconds
            )
        )
        self.sync.start(state.head_seq)
        since, problem = _since(query)
        if problem:
            await self.send(protocol.error("invalid_field", problem))
        if since is not None:
            await self.resume(since)
        elif self.sync.go_live():
            self._start_catch_up()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Not channels' own, which then hops to the thread every thread-sensitive call shares
        # to close database connections: a socket holds none (db.py closes each call's own).
        # A draining server's 10,000 disconnects queued there for over 10 s (docs/benchmarks.md).
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if hasattr(self, "hub"):
            self.hub.detach(self)
        if self.catch_up_task is not None:
            self.catch_up_task.cancel()

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closed = True
        await super().close(code=code, reason=reason)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        if not self.closed:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    # --- from the hub (hub.Listener) ----------------------------------------------

    async def push_notifications(self, items: list[tuple[int, str]], redelivery: bool) -> None:
        """Encoded notification frames for this user, (seq, text), from one round of the hub."""
        plan = self.sync.on_push(items, redelivery=redelivery)
        if plan.send:
            await self._send_notifications(plan.send)
        if plan.catch_up:
            self._start_catch_up()
        if plan.too_slow:
            # The client is not keeping up; it reconnects and resumes, losing nothing.
            await self.close(code=CLOSE_SLOW_CONSUMER)

    async def _send_notifications(self, frames: list[str]) -> None:
        for text in protocol.batches(frames) if self.batching else frames:
            await self.send(text)

    async def push_event(self, text: str) -> None:
        await self.send(text)

    async def on_heartbeat(self, head_seq: int, unread: int) -> None:
        plan = self.sync.on_heartbeat(head_seq, unread)
        if plan.catch_up:
            self._start_catch_up()
        else:
            await self.send(protocol.heartbeat(head_seq=plan.head_seq, unread=plan.unread))

    async def close_unauthenticated(self) -> None:
        await self.close(code=CLOSE_UNAUTHENTICATED)

    # --- replay -------------------------------------------------------------------

    def _start_catch_up(self) -> None:
        if self.catch_up_task is None or self.catch_up_task.done():
            self.catch_up_task = asyncio.create_task(self.resume(self.sync.sent_seq, asked=False))

    async def resume(self, since: int, *, asked: bool = True) -> None:
        """Send one page after `since`, then `synced`; repeat while pushes arrived meanwhile.

        When the client asked (resume, ?since=) it may have been away while
        another device read things: a `read_state` frame first brings it in step.
        """
        async with self.sync_lock:
            self.sync.begin_replay(since)
            try:
                next_since: int | None = since
                while next_since is not None and not self.closed:
                    page = await database_sync_to_async(selectors.replay_page, thread_sensitive=False)(
                        self.user_id, since=next_since, limit=self.settings.replay_page_size, with_read_state=asked
                    )
                    asked = False
                    if page.read_state:
                        await self.send(page.read_state)
                    if page.reset_reason:
                        await self.send(protocol.reset(reason=page.reset_reason, head_seq=page.head_seq))
                    else:
                        await self._send_notifications(page.frames)
                        await self.send(protocol.synced(head_seq=page.head_seq, replayed=len(page.frames), more=page.more))
                    next_since = self.sync.page_sent(page.last_seq, more=page.more)
            finally:
                self.sync.end_replay()

    # --- from the client --------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closed:
            return
        if _frame_bytes(text_data, bytes_data) > self.settings.max_frame_bytes:
            # notifications/server.py refuses such frames before they are assembled (1009);
            # this is for other servers, which let an application close with 3000-4999 only.
            await self.close(code=CLOSE_TOO_BIG_SEEN_BY_APP)
            return
        if text_data is None:
            await self.send(protocol.error("bad_frame", "binary frames are not supported; send JSON text"))
            return
        if not self._take_token():
            await self.close(code=CLOSE_RATE_LIMITED)
            return
        try:
            frame = protocol.parse(text_data)
        except FrameError as e:
            await self.send(protocol.error(e.code, e.message, e.ref))
            return
        try:
            await self.handle(frame)
        except ServiceError as e:
            await self._refuse(frame, e.code, e.message)
        except OperationalError as e:
            if not availability.is_down_error(e):
                raise
            # The database is away: this frame did nothing; the socket stays up for when it is back.
            await self._refuse(frame, "unavailable", "the database is unavailable; try again shortly")

    async def _refuse(self, frame: ClientFrame, code: str, message: str) -> None:
        if frame.ref is not None:
            await self.send(protocol.reply(frame.ref, ok=False, error=code, message=message))
        else:
            await self.send(protocol.error(code, message))

    def _take_token(self) -> bool:
        now = time.monotonic()
        self.tokens = min(
            float(self.settings.client_frame_burst), self.tokens + (now - self.tokens_at) * self.settings.client_frames_per_second
        )
        self.tokens_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def handle(self, frame: ClientFrame) -> None:
        extra: dict[str, Any] = {}
        if isinstance(frame, Ping):
            await self.send(protocol.pong(frame.ref))
            return
        if isinstance(frame, Resume):
            await self.resume(frame.since)
        elif isinstance(frame, Ack):
            await self.ack(frame.seq, confirm=frame.ref is not None)
        elif isinstance(frame, Read):
            result = await database_sync_to_async(services.mark_read)(user_id=self.user_id, ids=frame.ids, everything=frame.all)
            extra.update(unread=result.unread, head_seq=result.head_seq)
        elif isinstance(frame, Subscribe):
            await database_sync_to_async(services.subscribe)(user_id=self.user_id, slug=frame.topic)
        elif isinstance(frame, Unsubscribe):
            await database_sync_to_async(services.unsubscribe)(user_id=self.user_id, slug=frame.topic)
        if frame.ref is not None:
            await self.send(protocol.reply(frame.ref, **extra))

    async def ack(self, seq: int, *, confirm: bool = False) -> None:
        """Batched by the hub; with a `ref` the reply waits until the ack is written."""
        to_record = self.sync.on_ack(seq)
        if to_record is not None:
            written = self.hub.record_ack(self.user_id, to_record)
            if confirm:
                await asyncio.shield(written)
