"""One load-generator worker process: holds a share of the sockets and counts what arrives.

Started by the runner as `python -m bench.loadgen`; it reads one JSON command a
line on stdin and answers each with one JSON line on stdout. Only loopback
URLs are accepted. Every wait is bounded by a timeout; on `close` or EOF it
closes its sockets and exits.

Each socket speaks its peer's framing (`kind`):
  ours      protocol v1: `welcome` first, `notification` (or, with ?batch=1,
            `batch`) frames with a per-user seq, cumulative `ack {seq}` batched every ACK_EVERY messages or
            ACK_INTERVAL seconds, `resume`/`synced` for replay; given an http:// URL, the same
            frames over the event stream (bench/stream_client.py: SSE in, frames POSTed)
  channels  plain JSON text frames: `welcome`, then notifications
  socketio  Engine.IO 4 / Socket.IO 5 over a WebSocket: open `0{..}`, connect
            `40`, events `42["notification", {...}]`, ping `2` -> pong `3`
  bare      plain JSON text frames, like channels

A notification's publish index is `n` (ours: data.n) and the publisher's
monotonic clock at the publish call is `t` (ours: data.t). CLOCK_MONOTONIC is
one clock for every process on the machine, so `receipt - t` is a latency.

Sockets connected with `retry` (the storm) behave as client.js does when theirs
closes: reconnect after its backoff, with ?since= their cursor, a failed attempt
(refused while the server is down) backing off further.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlparse

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .stream_client import EventStreamClient, Sessions

# Acks like notifications/static/notifications/client.js: cumulative, at most ACK_INTERVAL after the first
# unacked notification, or at once when ACK_EVERY are unacked (BENCH_ACK_MS / BENCH_ACK_EVERY).
ACK_EVERY = int(os.environ.get("BENCH_ACK_EVERY", "100"))
ACK_INTERVAL = int(os.environ.get("BENCH_ACK_MS", "1000")) / 1000
CONNECT_TIMEOUT = 30.0
# client.js's connectTimeoutMs: a reconnect attempt with no welcome within it is dropped, and counts as failed.
RECONNECT_TIMEOUT = 10.0
# client.js's default backoff: a wait uniform in [MIN, min(MAX, BASE * 2^attempt)), attempt 0 on the first retry.
BACKOFF_MIN, BACKOFF_BASE, BACKOFF_MAX = 0.25, 1.0, 30.0


def backoff_delay(attempt: int) -> float:
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(attempt, 30))
    return BACKOFF_MIN + random.random() * max(0.0, ceiling - BACKOFF_MIN)


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError(f"the load generator only talks to loopback, not {host!r}")


class Sock:
    """One client socket and what it has seen since the last `mark`."""

    __slots__ = (
        "acked", "attempt", "attempts", "done_at", "dups", "failed", "first_n", "from_seq", "gaps", "head", "kind", "last_seq",
        "lat", "received", "resynced", "retry", "seen_n", "synced", "unacked", "want", "ws",
    )  # fmt: skip

    def __init__(self, ws: ClientConnection | EventStreamClient, kind: str, retry: bool = False) -> None:
        self.ws = ws
        self.kind = kind
        self.retry = retry  # reconnects when closed, as client.js does
        self.last_seq = 0  # ours: highest seq held (client de-dup cursor)
        self.acked = 0
        self.unacked = 0
        self.head = 0
        self.received = 0  # distinct notifications since mark
        self.dups = 0
        self.gaps = 0  # a seq past last_seq + 1 (client.js would resume; here it counts as a loss)
        self.seen_n: set[int] = set()
        self.first_n = 0
        self.lat: list[float] = []
        self.synced: asyncio.Event = asyncio.Event()
        # The storm (`mark` with storm=n): n more after from_seq, then `synced`, at done_at.
        self.want = 0
        self.from_seq = 0
        self.done_at = 0.0
        self.resynced = False  # a `synced` came on a socket opened since mark: what it lacks then is lost
        self.attempt = 0  # client.js's backoff exponent: 0 again on every welcome
        self.attempts = 0  # reconnect attempts since mark, and how many of them failed
        self.failed = 0


class Worker:
    def __init__(self) -> None:
        self.socks: list[Sock] = []
        self.dirty: dict[Sock, float] = {}  # socket -> when its pending ack is due
        self.last_receipt = 0.0
        self.frames = 0  # notification-carrying frames since mark (a `batch` counts once)
        self.keep_latency = False
        self.progress = asyncio.Event()
        self.errors: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.ack_task: asyncio.Task[None] | None = None
        self.attempt_times: list[float] = []  # storm: when each reconnect attempt began, since mark
        self.closes: Counter[str] = Counter()  # storm: close codes of the sockets the server dropped
        self.failures: Counter[str] = Counter()  # storm: why reconnect attempts failed
        self.http = Sessions()  # the event stream's clients

    # --- connecting -----------------------------------------------------------

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        url: str = cmd["url"]
        _check_loopback(url)
        kind: str = cmd["kind"]
        tokens: list[str | None] = cmd.get("tokens") or [None] * int(cmd["count"])
        concurrency = int(cmd.get("concurrency", 16))
        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []
        opened: list[Sock] = []

        retry = bool(cmd.get("retry"))

        async def one(token: str | None) -> None:
            async with gate:
                try:
                    sock = await asyncio.wait_for(self._open(url, kind, token, cmd.get("since"), retry), CONNECT_TIMEOUT)
                    opened.append(sock)
                except Exception as e:
                    failures.append(f"{type(e).__name__}: {e}"[:200])

        t0 = time.monotonic()
        await asyncio.gather(*(one(t) for t in tokens))
        t1 = time.monotonic()
        self.socks.extend(opened)
        if kind == "ours" and self.ack_task is None:
            self.ack_task = asyncio.create_task(self._ack_loop())
        return {"connected": len(opened), "failed": len(failures), "errors": failures[:3], "t0": t0, "t1": t1}

    async def _open(self, url: str, kind: str, token: str | None, since: int | None, retry: bool = False) -> Sock:
        ws, head = await self._handshake(url, kind, token, since)
        sock = Sock(ws, kind, retry)
        if kind != "socketio":
            sock.head = head
            sock.last_seq = sock.acked = head if since is None else since
        reader = self._reconnecting(sock, url, token) if retry else self._reader(sock)
        self.tasks.append(asyncio.create_task(reader))
        return sock

    async def _handshake(
        self, url: str, kind: str, token: str | None, since: int | None
    ) -> tuple[ClientConnection | EventStreamClient, int]:
        """Open a socket and read its opening frames; the welcome's head_seq (0 for socketio)."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        if kind == "socketio":
            url = url + "?EIO=4&transport=websocket"
        elif kind == "ours":
            # Like client.js: it reads `batch` frames (several notifications in one).
            url = f"{url}?batch=1" if since is None else f"{url}?batch=1&since={since}"
        ws: ClientConnection | EventStreamClient
        if url.startswith("http"):  # the event stream: the same frames as Server-Sent Events
            ws = await EventStreamClient.open(self.http, url, token, CONNECT_TIMEOUT)
            ws.on_error = self._report
        else:
            options: dict[str, Any] = {"compression": None, "ping_interval": None, "max_queue": None, "open_timeout": CONNECT_TIMEOUT}
            ws = await connect(url, additional_headers=headers, **options)
        try:
            if kind == "socketio":
                opening = await ws.recv()
                assert isinstance(opening, str) and opening.startswith("0"), opening
                await ws.send("40")
                while True:
                    frame = await ws.recv()
                    if isinstance(frame, str) and frame.startswith("40"):
                        return ws, 0
            welcome = orjson.loads(await ws.recv())
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"first frame is not welcome: {welcome}")
            if isinstance(ws, EventStreamClient):
                ws.stream_id = welcome["stream"]  # the POSTed frames name it
            return ws, int(welcome.get("head_seq", 0))
        except BaseException:
            if isinstance(ws, EventStreamClient):
                ws.abort()
            else:
                ws.transport.abort()
            raise

    def _report(self, error: str) -> None:
        self.errors.append(error[:200])

    async def _reconnecting(self, sock: Sock, url: str, token: str | None) -> None:
        """client.js's loop: read until the socket closes, then back off and reconnect with ?since= the cursor."""
        while True:
            await self._reader(sock)
            self.closes[str(sock.ws.close_code or 1006)] += 1
            while True:
                await asyncio.sleep(backoff_delay(sock.attempt))
                sock.attempt += 1
                sock.attempts += 1
                self.attempt_times.append(time.monotonic())
                try:
                    sock.ws, sock.head = await asyncio.wait_for(self._handshake(url, sock.kind, token, sock.last_seq), RECONNECT_TIMEOUT)
                    break
                except Exception as e:  # refused while down, a handshake timeout, a 5xx: one more attempt
                    sock.failed += 1
                    self.failures[_why(e)] += 1
            sock.attempt = 0  # a welcome resets it, as in client.js

    # --- receiving ----------------------------------------------------------------

    async def _reader(self, sock: Sock) -> None:
        ws = sock.ws
        try:
            async for raw in ws:
                if sock.kind == "socketio":
                    if raw == "2":
                        await ws.send("3")
                        continue
                    if not isinstance(raw, str) or not raw.startswith("42"):
                        continue
                    event, payload = orjson.loads(raw[2:])[:2]
                    if event != "notification":
                        continue
                    self.frames += 1
                    self._arrived(sock, payload["n"], payload["t"], None)
                    continue
                frame = orjson.loads(raw)
                kind = frame.get("type")
                if kind in {"notification", "batch"}:
                    self.frames += 1
                if kind == "notification":
                    if sock.kind == "ours":
                        self._arrived(sock, frame["data"]["n"], frame["data"]["t"], frame["seq"])
                    else:
                        self._arrived(sock, frame["n"], frame["t"], None)
                elif kind == "batch":
                    for inner in frame["frames"]:
                        self._arrived(sock, inner["data"]["n"], inner["data"]["t"], inner["seq"])
                elif kind == "synced":
                    sock.head = frame["head_seq"]
                    if not frame.get("more"):
                        sock.synced.set()
                        if sock.want and sock.attempts:
                            sock.resynced = True
                        if sock.want and not sock.done_at and sock.received >= sock.want:
                            sock.done_at = time.monotonic()
                            self.progress.set()
                    else:
                        await ws.send(orjson.dumps({"type": "resume", "since": sock.last_seq}).decode())
                elif kind in {"error", "reset"}:
                    self.errors.append(str(frame)[:200])
        except ConnectionClosed as e:  # a reconnecting client expects this; for the others `expect` reports what is missing
            if not sock.retry:
                self.errors.append(f"reader: {type(e).__name__}: {e}"[:200])
        except Exception as e:
            self.errors.append(f"reader: {type(e).__name__}: {e}"[:200])

    def _arrived(self, sock: Sock, n: int, t: float, seq: int | None) -> None:
        now = time.monotonic()
        if seq is not None:
            if seq <= sock.last_seq:
                sock.dups += 1  # at-least-once: the client de-duplicates by seq
                return
            if seq > sock.last_seq + 1:
                sock.gaps += 1
            sock.last_seq = seq
            sock.unacked += 1
            if sock.unacked >= ACK_EVERY:
                self._send_ack(sock)
            elif sock not in self.dirty:
                self.dirty[sock] = now + ACK_INTERVAL
        if n in sock.seen_n:
            sock.dups += 1
            return
        sock.seen_n.add(n)
        sock.received += 1
        if self.keep_latency:
            sock.lat.append(now - t)
        self.last_receipt = now
        self.progress.set()

    def _send_ack(self, sock: Sock) -> None:
        sock.unacked = 0
        sock.acked = sock.last_seq
        self.dirty.pop(sock, None)
        task = asyncio.ensure_future(sock.ws.send(orjson.dumps({"type": "ack", "seq": sock.last_seq}).decode()))
        task.add_done_callback(_ignore_result)

    async def _ack_loop(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            for sock in [s for s, due in self.dirty.items() if due <= now]:
                self._send_ack(sock)

    # --- expectations -------------------------------------------------------------

    def mark(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Start counting afresh; with storm=n, each socket is done once it holds n more and has been `synced`."""
        self.keep_latency = bool(cmd.get("latency"))
        want = int(cmd.get("storm", 0))
        for sock in self.socks:
            sock.received = 0
            sock.seen_n = set()
            sock.lat = []
            sock.dups = sock.gaps = 0
            sock.want, sock.from_seq, sock.done_at, sock.resynced = want, sock.last_seq, 0.0, False
            sock.attempts = sock.failed = 0
        self.last_receipt = 0.0
        self.frames = 0
        self.errors = []
        self.attempt_times = []
        self.closes.clear()
        self.failures.clear()
        return {"socks": len(self.socks)}

    async def expect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Wait until every socket holds `n` notifications since `mark`, or the timeout."""
        want = int(cmd["n"])
        deadline = time.monotonic() + float(cmd["wait"])
        while time.monotonic() < deadline:
            if all(s.received >= want for s in self.socks):
                break
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), min(0.5, max(0.01, deadline - time.monotonic())))
        missing = sum(max(0, want - s.received) for s in self.socks)
        lat = [x for s in self.socks for x in s.lat]
        return {
            "complete": missing == 0,
            "missing": missing,
            "delivered": sum(s.received for s in self.socks),
            "dups": sum(s.dups for s in self.socks),
            "frames": self.frames,
            "last": self.last_receipt,
            "latencies": [round(x * 1000, 3) for x in lat],
            "errors": self.errors[:5],
        }

    async def storm_wait(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Wait until every socket is done (see `mark`) or the timeout; each one's seconds since `t0` (the server's spawn)."""
        t0 = float(cmd["t0"])
        deadline = time.monotonic() + float(cmd["wait"])
        while time.monotonic() < deadline and not all(s.done_at for s in self.socks):
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), min(0.5, max(0.01, deadline - time.monotonic())))
        done = [s for s in self.socks if s.done_at]
        return {
            "seconds": [round(s.done_at - t0, 4) for s in done],
            # Lost: what a client still lacks after the server said `synced` on its new socket. Not
            # received: what the clients that never got that far lack (not back within the wait).
            "lost": sum(max(0, s.want - s.received) for s in self.socks if s.resynced),
            "not_received": sum(max(0, s.want - s.received) for s in self.socks if not s.resynced),
            "wrong_cursor": sum(1 for s in self.socks if s.resynced and s.last_seq != s.from_seq + s.want),
            "gaps": sum(s.gaps for s in self.socks),
            "dups": sum(s.dups for s in self.socks),
            "attempts": sum(s.attempts for s in self.socks),
            "attempts_after": sum(1 for t in self.attempt_times if t >= t0),
            "failed": sum(s.failed for s in self.socks),
            "max_attempts": max((s.attempts for s in self.socks), default=0),
            "closes": dict(self.closes),
            "failures": dict(self.failures),
            "errors": self.errors[:5],
        }

    async def replay(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Reconnect one user with ?since= and time until every missed one and `synced` arrived."""
        url, token, since, want = cmd["url"], cmd["token"], int(cmd["since"]), int(cmd["n"])
        _check_loopback(url)
        self.mark({})
        t0 = time.monotonic()
        sock = await self._open(url, "ours", token, since)
        try:
            await asyncio.wait_for(sock.synced.wait(), float(cmd.get("wait", 30)))
            t1 = time.monotonic()
            ok = sock.received == want and sock.last_seq == since + want
            self._send_ack(sock)
        finally:
            await sock.ws.close()
            self.dirty.pop(sock, None)
        return {"complete": ok, "received": sock.received, "dups": sock.dups, "seconds": t1 - t0, "errors": self.errors[:5]}

    async def close(self) -> dict[str, Any]:
        if self.ack_task is not None:
            self.ack_task.cancel()
            self.ack_task = None
        for sock in self.dirty:
            with contextlib.suppress(Exception):
                await sock.ws.send(orjson.dumps({"type": "ack", "seq": sock.last_seq}).decode())
        self.dirty.clear()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(asyncio.wait_for(s.ws.close(), 5) for s in self.socks), return_exceptions=True)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        closed = len(self.socks)
        self.socks, self.tasks = [], []
        await self.http.close()
        return {"closed": closed}


async def http_load(cmd: dict[str, Any]) -> dict[str, Any]:
    """POST JSON bodies over keep-alive HTTP/1.1 connections for `seconds`; count what was stored.

    `bodies` are sent round-robin by `concurrency` connections, each waiting
    for its answer before the next request. A response other than 201, or one
    that does not list every notification asked for, is an error.
    """
    _check_loopback(cmd["url"])
    target = urlparse(cmd["url"])
    host, port = target.hostname or "127.0.0.1", int(target.port or 80)
    bodies = [orjson.dumps(b) for b in cmd["bodies"]]
    expected = [int(n) for n in cmd["expected"]]
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {cmd['token']}\r\nContent-Type: application/json\r\n"
    )
    deadline = time.monotonic() + float(cmd["seconds"])
    stats = {"requests": 0, "stored": 0, "errors": 0}
    problems: list[str] = []
    latencies: list[float] = []
    counter = iter(range(10**9))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.monotonic() < deadline:
                i = next(counter) % len(bodies)
                started = time.monotonic()
                writer.write(f"{head}Content-Length: {len(bodies[i])}\r\n\r\n".encode() + bodies[i])
                status, payload = await asyncio.wait_for(_response(reader), 60)
                latencies.append(time.monotonic() - started)
                stats["requests"] += 1
                stored = _stored(payload) if status == 201 else -1
                if stored != expected[i]:
                    stats["errors"] += 1
                    problems.append(f"{status}: {payload[:200]!r}")
                    continue
                stats["stored"] += stored
        finally:
            writer.close()

    t0 = time.monotonic()
    await asyncio.gather(*(client() for _ in range(int(cmd["concurrency"]))))
    t1 = time.monotonic()
    latencies.sort()
    return {**stats, "t0": t0, "t1": t1, "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0, "errors_seen": problems[:3]}


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in {b"\r\n", b""}:
            break
        name, _, value = line.decode("latin1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length)
    return int(status_line.split()[1]), body


def _stored(payload: bytes) -> int:
    data = orjson.loads(payload)
    if "results" in data:
        return sum(len(r["notifications"]) for r in data["results"])
    return len(data.get("notifications", []))


def _why(e: BaseException) -> str:
    """A short, countable reason: the exception, what caused it, its message."""
    cause = f" <- {type(e.__cause__).__name__}" if e.__cause__ is not None else ""
    return f"{type(e).__name__}{cause}: {e}"[:100]


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


async def main() -> None:
    worker = Worker()
    out = sys.stdout
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        cmd = orjson.loads(line)
        try:
            name = cmd["cmd"]
            if name == "connect":
                reply = await worker.connect(cmd)
            elif name == "mark":
                reply = worker.mark(cmd)
            elif name == "expect":
                reply = await worker.expect(cmd)
            elif name == "replay":
                reply = await worker.replay(cmd)
            elif name == "storm_wait":
                reply = await worker.storm_wait(cmd)
            elif name == "http":
                reply = await http_load(cmd)
            elif name == "close":
                reply = await worker.close()
            else:
                reply = {"error": f"unknown command {name!r}"}
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"[:500]}
        out.write(orjson.dumps(reply).decode() + "\n")
        out.flush()
    await worker.close()


if __name__ == "__main__":
    asyncio.run(main())
