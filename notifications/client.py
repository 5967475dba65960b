"""A small Python client for the notification service: publish over HTTP, listen over WebSocket.

No Django here: any Python service can copy this file. HTTP uses the standard
library; the socket uses `websockets`.

    client = Client("http://127.0.0.1:8000", token="ntf_…")
    client.publish(users=["alice"], title="Build green", idempotency_key="build-42")

    async with client.listen(since=cursor) as stream:
        async for n in stream:          # in seq order, each seq once
            print(n.seq, n.title)
        # stream.consumed: the last seq you took; persist it, pass it as `since` next time

The listener keeps a cursor (the last seq it holds), de-duplicates by seq,
resumes on `synced {more}` and when a heartbeat shows it is behind, acks
cumulatively in batches (for what the caller has taken), and reconnects with
exponential backoff and full jitter, from `since=cursor`. A `reset` (cursor
older than retention) is recovered over HTTP when the listener has a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

log = logging.getLogger("notifications.client")

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_RATE_LIMITED = 4429
FATAL_CLOSE_CODES = {CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN}


# --- values -----------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    seq: int
    id: int
    title: str
    topic: str | None = None
    kind: str = "message"
    body: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    level: str = "info"
    created_at: str = ""
    read: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Notification:
        return cls(
            seq=int(d["seq"]), id=int(d["id"]), title=str(d["title"]), topic=d.get("topic"), kind=d.get("kind", "message"),
            body=d.get("body", ""), data=d.get("data") or {}, url=d.get("url", ""), level=d.get("level", "info"),
            created_at=str(d.get("created_at", "")), read=bool(d.get("read", False)),
        )  # fmt: skip


@dataclass(frozen=True)
class Delivery:
    recipient: int
    id: int
    seq: int


@dataclass(frozen=True)
class PublishResult:
    created: bool
    notifications: list[Delivery]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PublishResult:
        return cls(bool(d["created"]), [Delivery(int(n["recipient"]), int(n["id"]), int(n["seq"])) for n in d["notifications"]])


@dataclass(frozen=True)
class InboxPage:
    items: list[Notification]
    head_seq: int
    unread: int
    next_before: int | None
    next_since: int | None


class ApiError(Exception):
    """An error answer of the HTTP API: {code, message, fields}."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


class ListenerClosed(Exception):
    """The server refused the socket for good (4401 not authenticated, 4403 forbidden)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed by server with {code} {reason}".strip())
        self.code = code


# --- HTTP ---------------------------------------------------------------------------


class Client:
    """HTTP API v1 with a Bearer token. Blocking calls: in asyncio code use `await asyncio.to_thread(client.publish, ...)`."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"Client({self.base_url!r})"

    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + "/api/v1" + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)
            except ValueError:
                err = {}
            raise ApiError(
                e.code, err.get("code", "http_error"), err.get("message", raw[:200].decode(errors="replace")), err.get("fields")
            ) from None

    def publish(
        self,
        *,
        title: str,
        users: Sequence[int | str] = (),
        topic: str | None = None,
        body: str = "",
        kind: str = "message",
        data: dict[str, Any] | None = None,
        url: str = "",
        level: str = "info",
        expires_at: str | None = None,
        idempotency_key: str | None = None,
    ) -> PublishResult:
        """Publish to users (ids or usernames) or to a topic. `created` is False for a repeated idempotency key."""
        payload = notification_payload(
            title=title, users=users, topic=topic, body=body, kind=kind, data=data, url=url, level=level, expires_at=expires_at
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        _, result = self.request("POST", "/notifications", payload, headers=headers)
        return PublishResult.from_dict(result)

    def publish_batch(self, notifications: Sequence[dict[str, Any]], *, idempotency_key: str | None = None) -> list[PublishResult]:
        """Up to 1,000 payloads (see notification_payload) in one transaction."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        _, result = self.request("POST", "/notifications/batch", {"notifications": list(notifications)}, headers=headers)
        return [PublishResult.from_dict(r) for r in result["results"]]

    def inbox(
        self, *, since: int | None = None, before: int | None = None, limit: int = 50, unread: bool = False, topic: str | None = None
    ) -> InboxPage:
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since
        if before is not None:
            params["before"] = before
        if unread:
            params["unread"] = "true"
        if topic:
            params["topic"] = topic
        _, page = self.request("GET", "/me/notifications?" + urllib.parse.urlencode(params))
        return InboxPage(
            [Notification.from_dict(n) for n in page["items"]], page["head_seq"], page["unread"], page["next_before"], page["next_since"]
        )

    def mark_read(self, ids: Sequence[int] = (), *, everything: bool = False) -> dict[str, Any]:
        _, result = self.request("POST", "/me/notifications/read", {"all": True} if everything else {"ids": list(ids)})
        return dict(result)

    def unread_count(self) -> int:
        _, result = self.request("GET", "/me/unread-count")
        return int(result["unread"])

    def ws_ticket(self) -> str:
        _, result = self.request("POST", "/ws-ticket")
        return str(result["ticket"])

    @property
    def ws_url(self) -> str:
        return ws_url_for(self.base_url)

    def listen(self, *, since: int | None = None, **options: Any) -> Listener:
        """A listener on this server as this token's user; see Listener for the options."""
        return Listener(self.ws_url, token=self.token, since=since, http=self, **options)


def notification_payload(
    *,
    title: str,
    users: Sequence[int | str] = (),
    topic: str | None = None,
    body: str = "",
    kind: str = "message",
    data: dict[str, Any] | None = None,
    url: str = "",
    level: str = "info",
    expires_at: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"title": title, "kind": kind, "body": body, "data": data or {}, "url": url, "level": level}
    if topic is not None:
        payload["topic"] = topic
    else:
        payload["users"] = list(users)
    if expires_at is not None:
        payload["expires_at"] = expires_at
    return payload


def ws_url_for(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit((scheme, parts.netloc, "/ws/notifications/", "", ""))


# --- WebSocket ----------------------------------------------------------------------

TicketSource = Callable[[], str | Awaitable[str]]
EventHandler = Callable[[dict[str, Any]], None]


class Listener:
    """A live, gap-free stream of one user's notifications (protocol v1), with resume, acks and reconnects.

    Authenticate with `token` (a read-scope Bearer token) or `ticket`, a
    callable returning a fresh single-use ticket for each connection.
    `since`: the cursor to start after (None: only what arrives from now on).
    `on_event`: called with every other frame (welcome, read, unread, reset,
    synced, heartbeat, reply, error) and with {"type": "state", "state": ...}.
    """

    def __init__(
        self,
        ws_url: str,
        *,
        token: str | None = None,
        ticket: TicketSource | None = None,
        since: int | None = None,
        http: Client | None = None,
        on_event: EventHandler | None = None,
        ack_interval: float = 1.0,
        ack_every: int = 100,
        backoff_base: float = 0.25,
        backoff_max: float = 30.0,
        queue_size: int = 1000,
        open_timeout: float = 10.0,
    ) -> None:
        if not (token or ticket):
            raise ValueError("a Listener needs a token or a ticket source")
        self.ws_url = ws_url
        self.cursor = since
        self.head_seq = 0
        self.unread = 0
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
        self._queue: asyncio.Queue[Notification | None] = asyncio.Queue(queue_size)  # None wakes a waiting reader
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
            if item is not None:
                break
        self._taken = max(self._taken, item.seq)
        if self._taken - self._acked >= self._ack_every:
            self._ack_now.set()
        return item

    async def read(self, ids: Sequence[int] = (), *, everything: bool = False) -> None:
        """Mark read over the socket; every device of the user hears of it."""
        await self._send({"type": "read", "all": True} if everything else {"type": "read", "ids": list(ids)})

    # --- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
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
            except (OSError, TimeoutError, ApiError) as e:
                log.info("cannot connect (%s); retrying", type(e).__name__)
            finally:
                self._ws = None
            self._set_state("offline")
            if self._closed:
                break
            log.info("socket closed (%s); reconnecting from seq %s", code, self.cursor)
            # A socket that got as far as `welcome` starts the backoff over, unless it was closed for its rate.
            attempt = 1 if self.connections > welcomed_before and code != CLOSE_RATE_LIMITED else attempt + 1
            # Full jitter: a fleet of clients cut off together does not come back together.
            await asyncio.sleep(random.uniform(0, min(self._backoff_max, self._backoff_base * 2**attempt)))

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
        try:
            async for raw in ws:
                if isinstance(raw, bytes):
                    continue
                await self._handle(json.loads(raw))
        finally:
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await acker

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "batch":
            for inner in frame["frames"]:
                await self._handle(inner)
            return
        if kind == "notification":
            await self._notification(frame)
            return
        if kind == "welcome":
            self.connections += 1
            self.head_seq, self.unread = int(frame["head_seq"]), int(frame["unread"])
            if self.cursor is None:  # start from now: what came before is not this listener's
                self.cursor = self._taken = self._acked = self.head_seq
            self._welcomed.set()
            self._set_state("syncing" if self._replaying else "live")
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
                self._replaying = False
                self._set_state("live")
        elif kind == "heartbeat":
            self.head_seq = max(self.head_seq, int(frame["head_seq"]))
            if not self._replaying and self.head_seq > (self.cursor or 0):
                await self._resume()  # a push was lost on the way
        elif kind == "reset":
            await self._recover(frame)
        if kind in {"read", "unread", "read_state", "heartbeat"} and "unread" in frame:
            self.unread = int(frame["unread"])
        self._emit(frame)

    async def _notification(self, frame: dict[str, Any]) -> None:
        # The gap rule of docs/protocol.md ("Order and gaps"), as client.js keeps it.
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
        self.cursor = int(frame["seq"])
        await self._queue.put(Notification.from_dict(frame))

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
