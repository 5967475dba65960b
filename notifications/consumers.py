"""The WebSocket endpoint, protocol v1 (docs/protocol.md): auth, then route frames to services.

What a socket is sent, and what its client frames do, is the same on the event
stream: connection.SyncedConnection holds it; this module does the socket's I/O.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.utils import await_many_dispatch
from django.db import OperationalError

from . import auth, availability, connection, protocol
from .connection import SyncedConnection, since_from
from .errors import ServiceError
from .protocol import CLOSE_RATE_LIMITED, CLOSE_TOO_BIG_SEEN_BY_APP, CLOSE_UNAUTHENTICATED, ClientFrame, FrameError


def _frame_bytes(text: str | None, data: bytes | None) -> int:
    if text is None:
        return len(data or b"")
    # ASCII (most frames) is one byte a character: no need to encode it to measure it.
    return len(text) if text.isascii() else len(text.encode())


class NotificationConsumer(SyncedConnection, AsyncWebsocketConsumer):
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

    @property
    def handshake(self) -> auth.Handshake:
        """Left in the scope by auth.WebsocketAuthMiddleware, whichever way the socket came in."""
        found = self.scope[auth.HANDSHAKE]
        assert isinstance(found, auth.Handshake)
        return found

    async def connect(self) -> None:
        try:
            await self._connect()
        finally:
            # Up (welcome and the first replay sent) or refused: the next handshake may start (admission.py).
            self.handshake.admitted()

    async def _connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        self.init_sync(batching=query.get("batch") == ["1"])

        handshake = self.handshake
        if handshake.user_id is None:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        state = await self.attach(handshake)
        await self.accept()
        await self.start(state, *since_from(query))

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Not channels' own, which then hops to the thread every thread-sensitive call shares
        # to close database connections: a socket holds none (db.py closes each call's own).
        # A draining server's 10,000 disconnects queued there for over 10 s (docs/benchmarks.md).
        self.stop()
        raise StopConsumer()

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        self.closed = True
        await super().close(code=code, reason=reason)

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        if not self.closed:
            await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    # --- SyncedConnection: how a frame goes out, how the socket ends ---------------------

    async def send_frame(self, text: str, *, seq: int | None = None) -> None:
        await self.send(text)

    async def close_with(self, code: int) -> None:
        await self.close(code=code)

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
        if not self.take_frame_token():
            await self.close(code=CLOSE_RATE_LIMITED)
            return
        try:
            frame = protocol.parse(text_data)
        except FrameError as e:
            await self.send(e.frame())
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
        await self.send(protocol.refusal(frame, code, message))

    async def handle(self, frame: ClientFrame) -> None:
        answer = await connection.answer(frame, user_id=self.user_id, connection=self)
        if answer is not None:
            await self.send(answer)
