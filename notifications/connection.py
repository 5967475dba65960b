"""What a live connection does, whatever carries it: a WebSocket (consumers.py) or an event stream (event_stream.py).

Welcome, replay in pages, live pushes, heartbeats and acks follow one rule
(socket_sync.py) on both transports; each transport says only how a frame is
sent (`send_frame`) and how the connection ends (`close_with`). Client frames
are answered by `answer`, on the socket or from `POST /api/v1/me/frames`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from channels.db import database_sync_to_async

from . import auth, conf, hub, protocol, selectors, services, users
from .errors import ServiceError
from .protocol import CLOSE_SLOW_CONSUMER, CLOSE_UNAUTHENTICATED, Ack, Answer, ClientFrame, Command, Ping, Resume, Subscribe, Unsubscribe
from .socket_sync import SocketSync


def since_from(query: dict[str, list[str]]) -> tuple[int | None, str | None]:
    """`?since=`: the cursor to replay from, or a problem to report in an `error` frame."""
    values = query.get("since")
    if not values:
        return None, None
    if not values[0].isdigit() or int(values[0]) > protocol.MAX_SEQ:
        return None, "'since' must be a non-negative integer"
    return int(values[0]), None


class SyncedConnection:
    """One connection's place in its user's stream (a hub.Listener); subclasses send and close."""

    user_id: users.UserId
    credential: tuple[str, str]
    hub: hub.Hub
    labels_seqs = False  # send_frame is told the seq each notification frame carries

    def init_sync(self, *, batching: bool) -> None:
        self.settings = conf.get()
        self.closed = False
        self.sync = SocketSync(buffer_frames=self.settings.send_buffer_frames)
        self.sync_lock = asyncio.Lock()  # one replay at a time: a client's resume waits for a catch-up
        self.catch_up_task: asyncio.Task[None] | None = None
        # Protocol addition (docs/protocol.md): a client that can read `batch` frames gets
        # a burst's pushes several to a frame (hub.COALESCE_SECONDS), and replays in few frames.
        self.batching = batching
        self._frame_tokens = float(self.settings.client_frame_burst)
        self._frame_tokens_at = time.monotonic()

    def take_frame_token(self) -> bool:
        """The client's frame budget (NOTIFY_CLIENT_FRAME_BURST, refilled at NOTIFY_CLIENT_FRAMES_PER_SECOND): False past it."""
        now = time.monotonic()
        refill = (now - self._frame_tokens_at) * self.settings.client_frames_per_second
        self._frame_tokens = min(float(self.settings.client_frame_burst), self._frame_tokens + refill)
        self._frame_tokens_at = now
        if self._frame_tokens < 1:
            return False
        self._frame_tokens -= 1
        return True

    async def attach(self, handshake: auth.Handshake) -> selectors.StreamState:
        """Join the process's hub as the handshake's user; the user's stream as it stands once attached."""
        assert handshake.user_id is not None
        self.user_id = handshake.user_id
        self.credential = handshake.credential
        self.hub = hub.hub()
        await self.hub.attach(self)
        if handshake.token_use_stale:
            self.hub.writes.record_token_use(int(self.credential[1]))
        # A token's check read the head too, before this connection could attach: good unless a push
        # for this user was dispatched since. Otherwise read it now, attached, so none falls between.
        state = handshake.stream
        if state is None or self.hub.dispatched.since(handshake.stream_read_at, self.user_id):
            # Any worker thread, not the one shared by every DB call of the process: connects in parallel.
            state = await database_sync_to_async(selectors.stream_state, thread_sensitive=False)(self.user_id)
        return state

    async def send_frame(self, text: str, *, seq: int | None = None) -> None:
        """Send one encoded frame; `seq` is the highest notification seq it carries, if any."""
        raise NotImplementedError

    async def close_with(self, code: int) -> None:
        raise NotImplementedError

    async def start(self, state: selectors.StreamState, since: int | None, problem: str | None, **welcome: str) -> None:
        """Attached to the hub and the head read: welcome, then the replay asked for or live pushes."""
        await self.send_frame(
            protocol.welcome(
                user_id=self.user_id,
                head_seq=state.head_seq,
                unread=state.unread,
                unseen=state.unseen,
                heartbeat_s=self.settings.heartbeat_seconds,
                **welcome,
            )
        )
        self.sync.start(state.head_seq)
        if problem:
            await self.send_frame(protocol.error("invalid_field", problem))
        if since is not None:
            await self.resume(since)
        elif self.sync.go_live():
            self._start_catch_up()

    def stop(self) -> None:
        """The connection is gone: no more pushes, no replay left running."""
        self.closed = True
        if hasattr(self, "hub"):
            self.hub.detach(self)
        if self.catch_up_task is not None:
            self.catch_up_task.cancel()

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
            await self.close_with(CLOSE_SLOW_CONSUMER)

    async def _send_notifications(self, frames: Sequence[str]) -> None:
        for chunk in protocol.chunks(frames) if self.batching else [[f] for f in frames]:
            # Only a stream labels its events with their seq: a socket's fan-out parses nothing.
            seq = protocol.seq_of(chunk[-1]) if self.labels_seqs else None
            await self.send_frame(chunk[0] if len(chunk) == 1 else protocol.batch(chunk), seq=seq)

    async def on_heartbeat(self, head_seq: int, unread: int, unseen: int) -> None:
        plan = self.sync.on_heartbeat(head_seq, unread, unseen)
        if plan.catch_up:
            self._start_catch_up()
        else:
            await self.send_frame(protocol.heartbeat(head_seq=plan.head_seq, unread=plan.unread, unseen=plan.unseen))

    async def close_unauthenticated(self) -> None:
        await self.close_with(CLOSE_UNAUTHENTICATED)

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
                        await self.send_frame(page.read_state)
                    if page.reset_reason:
                        await self.send_frame(protocol.reset(reason=page.reset_reason, head_seq=page.head_seq), seq=page.head_seq)
                    else:
                        await self._send_notifications(page.frames)
                        await self.send_frame(protocol.synced(head_seq=page.head_seq, replayed=len(page.frames), more=page.more))
                    next_since = self.sync.page_sent(page.last_seq, more=page.more)
            finally:
                self.sync.end_replay()

    async def ack(self, seq: int, *, confirm: bool = False) -> None:
        """Batched by the hub; with a `ref` the reply waits until the ack is written."""
        to_record = self.sync.on_ack(seq)
        if to_record is not None:
            written = self.hub.writes.record_ack(self.user_id, to_record)
            if confirm:
                await asyncio.shield(written)


async def answer(frame: ClientFrame, *, user_id: users.UserId, connection: SyncedConnection | None) -> str | None:
    """Do what a client frame asks; the answer frame to send back (`reply`, `pong`), if it has one.

    A state change with an event id is always answered, `ref` or not: its sender keeps it until then.

    `connection` is the connection the frame belongs to, when this process holds
    it: a `resume` replays on it and an `ack` moves its window. Without it (an
    HTTP frame whose stream is served by another process) an ack is still written.
    Raises ServiceError (and the database's errors) for the caller to report.
    """
    extra: dict[str, Any] = {}
    if isinstance(frame, Ping):
        return protocol.pong(frame.ref)
    if isinstance(frame, Resume):
        if connection is None:
            raise ServiceError("no_stream", "resume replays on a stream this server holds: reconnect the stream with Last-Event-ID")
        await connection.resume(frame.since)
    elif isinstance(frame, Ack):
        if connection is not None:
            await connection.ack(frame.seq, confirm=frame.ref is not None)
        else:
            written = hub.hub().writes.record_ack(user_id, frame.seq)  # ack_many keeps it within the head
            if frame.ref is not None:
                await asyncio.shield(written)
    elif isinstance(frame, Command):
        outcome = await database_sync_to_async(services.change_inbox)(user_id=user_id, change=frame.change, client_id=frame.id)
        if frame.id is not None:
            return protocol.reply(frame.ref, id=frame.id, **outcome.answer())
        extra.update(outcome.answer())
    elif isinstance(frame, Answer):
        answered = await database_sync_to_async(services.answer_action)(
            user_id=user_id, seq=frame.seq, action_id=frame.action, client_id=frame.id
        )
        fields = answered.reply()
        if frame.id is None and frame.ref is None:
            return None if answered.ok else protocol.error(fields["error"], fields["message"])
        if frame.id is not None:
            fields["id"] = frame.id
        return protocol.encode({"type": "reply", "ref": frame.ref, **fields})
    elif isinstance(frame, Subscribe):
        await database_sync_to_async(services.subscribe)(user_id=user_id, slug=frame.topic)
    elif isinstance(frame, Unsubscribe):
        await database_sync_to_async(services.unsubscribe)(user_id=user_id, slug=frame.topic)
    return protocol.reply(frame.ref, **extra) if frame.ref is not None else None
