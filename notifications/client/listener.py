"""The WebSocket side: a live, gap-free stream of one user's notifications, with resume, acks and reconnects,
the inbox state every device shares, and an outbox for the changes this client makes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .inbox import Change, Count, Inbox
from .outbox import Changes, Outbox
from .values import CLOSE_RATE_LIMITED, FATAL_CLOSE_CODES, ApiError, InboxPage, ListenerClosed, Notification

log = logging.getLogger("notifications.client")


class InboxSource(Protocol):
    """What the listener needs of the HTTP client to recover from a `reset`."""

    def inbox(self, *, since: int | None = None, limit: int = 50) -> InboxPage: ...


TicketSource = Callable[[], str | Awaitable[str]]
EventHandler = Callable[[dict[str, Any]], None]


def reconnect_delay(retry: int, *, base: float, cap: float) -> float:
    """Full jitter: the n-th retry in a row (n >= 1) waits a uniform random time in [0, min(cap, base * 2**(n-1))].

    The first retry after a drop is spread too: clients cut off together (a
    server draining with 1012, a network blip) do not come back together.
    """
    return random.uniform(0, min(cap, base * 2 ** (retry - 1)))


class Listener(Changes):
    """A live, gap-free stream of one user's notifications (protocol v1), with resume, acks and reconnects.

    Authenticate with `token` (a read-scope Bearer token) or `ticket`, a
    callable returning a fresh single-use ticket for each connection.
    `since`: the cursor to start after (None: only what arrives from now on).
    `on_event`: called with every other frame (welcome, reset, synced, heartbeat,
    read_state, reply, error), with {"type": "state", "state": ...} when the
    connection's state changes, and with {"type": "change", "op", "seq", "event",
    "change": inbox.Change} for each change of inbox state (a `state` event, or
    "wake": a snoozed notification back at a new seq), once applied to `inbox`.

    The inbox changes this client makes (read, unread, seen, archive, unarchive,
    delete, snooze, and answers to actions) go through an outbox: each gets its own id, is kept until the
    server answers it, and is sent again, in order, after a reconnect; the server
    applies an id once. Each returns a future of the server's `reply`.
    """

    def __init__(
        self,
        ws_url: str,
        *,
        token: str | None = None,
        ticket: TicketSource | None = None,
        since: int | None = None,
        http: InboxSource | None = None,
        on_event: EventHandler | None = None,
        ack_interval: float = 1.0,
        ack_every: int = 100,
        backoff_base: float = 1.0,  # as client.js: the first retry within 1 s, then 2, 4... up to backoff_max
        backoff_max: float = 30.0,
        queue_size: int = 1000,
        open_timeout: float = 10.0,
    ) -> None:
        if not (token or ticket):
            raise ValueError("a Listener needs a token or a ticket source")
        self.ws_url = ws_url
        self.cursor = since
        self.head_seq = 0
        self.inbox = Inbox()
        self._unread, self._unseen = Count("unread"), Count("unseen")
        self.outbox = Outbox(send=self._send)
        self.state = "offline"
        self.connections = 0
        self._token = token
        self._ticket = ticket
        self._http = http
        self._on_event = on_event
        self._ack_interval = ack_interval
        self._ack_every = ack_every
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._open_timeout = open_timeout
        # A notification for the caller; a state event's seq (nothing to hand on, but taken in order); None wakes a reader.
        self._queue: asyncio.Queue[Notification | int | None] = asyncio.Queue(queue_size)
        self._ahead: dict[int, dict[str, Any]] = {}  # frames past a gap, held until the server says what came before them
        self._last_seen: int | None = None  # the last seq received, held or not
        self._error: BaseException | None = None
        self._taken = since or 0  # highest seq handed to the caller: what we ack
        self._acked = self._taken
        self._replaying = False
        self._ack_now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._ws: ClientConnection | None = None
        self._welcomed = asyncio.Event()

    @property
    def unread(self) -> int:
        return self._unread.value

    @property
    def unseen(self) -> int:
        return self._unseen.value

    @property
    def consumed(self) -> int:
        """The highest seq handed to the caller: what is acked, and where a new listener should start."""
        return self._taken

    def __repr__(self) -> str:  # never the token
        return f"Listener({self.ws_url!r}, cursor={self.cursor}, state={self.state!r})"

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> Listener:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notifications-listener")
        return self

    async def __aenter__(self) -> Listener:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None and self._taken > self._acked:
            with contextlib.suppress(Exception):
                await self._send({"type": "ack", "seq": self._taken})
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.outbox.abandon()  # in memory only: what was not answered is not sent
        self._set_state("closed")
        self._wake()

    async def wait_live(self) -> None:
        """Wait for the first welcome (bound it with asyncio.timeout): from then on nothing published is missed."""
        self.start()
        await self._welcomed.wait()

    # --- consuming ------------------------------------------------------------------------

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> Notification:
        self.start()
        while True:
            if self._queue.empty():
                if self._error is not None:
                    raise self._error
                if self._closed:
                    raise StopAsyncIteration
            item = await self._queue.get()
            if isinstance(item, int):
                self._taken = max(self._taken, item)  # a state event: applied already, acked once taken in order
            elif item is not None:
                break
        self._taken = max(self._taken, item.seq)
        if self._taken - self._acked >= self._ack_every:
            self._ack_now.set()
        return item

    # --- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        retry = 0
        while not self._closed:
            self._set_state("connecting")
            welcomed_before = self.connections
            code: int | None = None
            try:
                url, headers = await self._connect_args()
                async with connect(url, additional_headers=headers, open_timeout=self._open_timeout, max_size=2**20) as ws:
                    self._ws = ws
                    await self._session(ws)
                    code = ws.close_code
            except asyncio.CancelledError:
                raise
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd is not None else 1006
                if code in FATAL_CLOSE_CODES:
                    await self._fail(ListenerClosed(code, e.rcvd.reason if e.rcvd else ""))
                    return
            except InvalidStatus as e:
                if e.response.status_code in (401, 403):
                    await self._fail(ListenerClosed(4000 + e.response.status_code, "handshake refused"))
                    return
                log.warning("handshake failed with HTTP %s; retrying", e.response.status_code)
            except (OSError, TimeoutError, InvalidHandshake, ApiError) as e:
                # InvalidHandshake: no valid answer, as from a server killed between the accept and its reply.
                log.info("cannot connect (%s); retrying", type(e).__name__)
            except Exception as e:
                # Anything else is a bug here or a server breaking the protocol: the caller's
                # iteration raises it, rather than waiting for a task that has died.
                log.exception("the listener stopped")
                await self._fail(e)
                return
            finally:
                self._ws = None
            self._set_state("offline")
            if self._closed:
                break
            log.info("socket closed (%s); reconnecting from seq %s", code, self.cursor)
            # A socket that got as far as `welcome` starts the backoff over, unless it was closed for its rate.
            retry = 1 if self.connections > welcomed_before and code != CLOSE_RATE_LIMITED else retry + 1
            await asyncio.sleep(reconnect_delay(retry, base=self._backoff_base, cap=self._backoff_max))

    async def _connect_args(self) -> tuple[str, dict[str, str]]:
        query: dict[str, Any] = {"batch": 1}  # we read `batch` frames (several notifications in one)
        headers: dict[str, str] = {}
        if self.cursor is not None:
            query["since"] = self.cursor
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self._ticket is not None:
            ticket = self._ticket()
            query["ticket"] = await ticket if inspect.isawaitable(ticket) else ticket
        url = self.ws_url + ("?" + urllib.parse.urlencode(query) if query else "")
        return url, headers

    async def _session(self, ws: ClientConnection) -> None:
        self._replaying = self.cursor is not None  # with ?since= the server replays right after welcome
        self._ahead.clear()  # the new socket's replay brings them again, in order
        self._acked = min(self._acked, self._taken)
        acker = asyncio.create_task(self._ack_loop(ws))
        self.outbox.disconnected()  # what was in flight goes again, once this socket is welcomed
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue
                await self._handle(json.loads(raw))
        finally:
            self.outbox.disconnected()
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await acker

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "batch":
            for inner in frame["frames"]:
                await self._handle(inner)
            return
        if kind in ("notification", "state"):
            await self._sequenced(frame)
            return
        if kind == "welcome":
            self.connections += 1
            self.head_seq = int(frame["head_seq"])
            self._unread.restart(self.head_seq, int(frame["unread"]))
            self._unseen.restart(self.head_seq, int(frame.get("unseen", 0)))
            if self.cursor is None:  # start from now: what came before is not this listener's
                self.cursor = self._taken = self._acked = self.head_seq
            self._welcomed.set()
            self._set_state("syncing" if self._replaying else "live")
            await self.outbox.connected()
        elif kind == "synced":
            self.head_seq = max(self.head_seq, int(frame["head_seq"]))
            if frame.get("more"):
                # A page ends at the last seq it carried; ask again from there.
                if self._last_seen is not None:
                    await self._settle_up_to(self._last_seen)
                await self._resume()
            else:
                # Everything up to head_seq has been sent: seqs the replay skipped had expired.
                await self._settle_up_to(int(frame["head_seq"]))
                for count in (self._unread, self._unseen):
                    count.covered_up_to(int(frame["head_seq"]))
                self._replaying = False
                self._set_state("live")
        elif kind == "heartbeat":
            self.head_seq = max(self.head_seq, int(frame["head_seq"]))
            if not self._replaying and self.head_seq > (self.cursor or 0):
                await self._resume()  # a push was lost on the way
        elif kind == "reset":
            await self._recover(frame)
        elif kind == "reply":
            await self.outbox.answered(frame)
        if kind in {"read_state", "heartbeat", "reply"}:
            for count in (self._unread, self._unseen):
                count.counted(frame)
        self._emit(frame)

    async def _sequenced(self, frame: dict[str, Any]) -> None:
        # The gap rule of docs/protocol.md ("Order and gaps"), as client.js keeps it:
        # notifications and state events share the user's seqs.
        seq = int(frame["seq"])
        self._last_seen = seq
        self.head_seq = max(self.head_seq, seq)
        if self.cursor is not None and (seq <= self.cursor or seq in self._ahead):
            return  # a duplicate: replays and live pushes may overlap
        if self.cursor is None or seq == self.cursor + 1:
            await self._accept(frame)
            await self._drain()
            return
        # A gap: hold this one and replay from the cursor. The replay fills the gap;
        # a seq it skips has expired, and `synced` says so by passing it.
        self._ahead[seq] = frame
        if not self._replaying:
            await self._resume()

    async def _accept(self, frame: dict[str, Any]) -> None:
        seq = self.cursor = int(frame["seq"])
        if frame["type"] == "state":
            for count in (self._unread, self._unseen):
                count.counted(frame)
            change = self.inbox.apply(frame)
            self._emit({"type": "change", "op": frame["op"], "seq": seq, "event": frame, "change": change})
            await self._queue.put(seq)
            return
        n = Notification.from_dict(frame)
        for count in (self._unread, self._unseen):
            count.taken(n)
        replaced = self.inbox.take(n)
        if replaced is not None:  # a snooze that woke: the notification is back as new, at a new seq
            woken = Change("wake", seq, changed=[self.inbox.items[n.id]])
            self._emit({"type": "change", "op": "wake", "seq": seq, "event": frame, "change": woken})
        await self._queue.put(n)

    async def _drain(self) -> None:
        while self.cursor is not None and self.cursor + 1 in self._ahead:
            await self._accept(self._ahead.pop(self.cursor + 1))

    async def _settle_up_to(self, seq: int) -> None:
        """The server has sent everything up to `seq` on this socket: what is held below it can go out."""
        for held in sorted(s for s in self._ahead if s <= seq):
            frame = self._ahead.pop(held)
            if held > (self.cursor or 0):
                await self._accept(frame)
        self.cursor = max(self.cursor or 0, seq)
        await self._drain()

    async def _resume(self) -> None:
        self._replaying = True
        self._set_state("syncing")
        await self._send({"type": "resume", "since": self.cursor or 0})

    async def _recover(self, frame: dict[str, Any]) -> None:
        """`reset`: the cursor is older than retention (or ahead of the server). Take what is still stored, then go on from head."""
        head = int(frame["head_seq"])
        if self._http is not None and frame.get("reason") == "retention":
            since = self.cursor or 0
            while True:
                page = await asyncio.to_thread(self._http.inbox, since=since, limit=200)
                for n in page.items:
                    if n.seq > (self.cursor or 0):
                        self.cursor = n.seq
                        await self._queue.put(n)
                if page.next_since is None:
                    break
                since = page.next_since
        self.cursor = max(self.cursor or 0, head) if frame.get("reason") == "retention" else head
        self._ahead.clear()
        self._replaying = False
        await self._resume()  # tells the server where this socket stands now

    async def _ack_loop(self, ws: ClientConnection) -> None:
        """Cumulative acks, batched: at most one per interval, or sooner after `ack_every` notifications."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ack_now.wait(), self._ack_interval)
            self._ack_now.clear()
            if self._taken > self._acked:
                seq = self._taken
                await ws.send(json.dumps({"type": "ack", "seq": seq}))
                self._acked = seq

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(json.dumps(frame))

    async def _fail(self, error: BaseException) -> None:
        self._error = error
        self._closed = True
        self._set_state("closed")
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._emit({"type": "state", "state": state})

    def _emit(self, frame: dict[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(frame)
        except Exception:  # the caller's handler must not take the connection down
            log.exception("on_event handler failed on a %r frame", frame.get("type"))
