"""A load-generator client of the event stream: `GET /api/v1/me/stream` read as Server-Sent Events, frames POSTed.

It stands in for a websockets ClientConnection where loadgen.py uses one
(`recv`, `async for`, `send`, `close`, `close_code`), so a stream client reads,
counts and acks exactly as a socket client does: each SSE event's `data:` is the
frame the socket would carry; a frame the client sends (its acks, a `resume`)
is `POST /api/v1/me/frames` with `Notify-Stream: <id from the welcome>`.

Connections are bounded: each stream holds one (as a socket would), and the
POSTs of one load-generator process share at most POST_CONNECTIONS keep-alive
connections. Every request has a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson

FRAMES_PATH = "/api/v1/me/frames"
POST_CONNECTIONS = 32  # per load-generator process: the acks of all its streams share these
POST_TIMEOUT = 30.0
# A replay page (500 notifications) is one `data:` line of ~200 KB; aiohttp's default line limit is 128 KB.
READ_BUFFER = 2**22


class Sessions:
    """One load-generator process's HTTP clients: streams (one connection each) and POSTs (a bounded pool)."""

    def __init__(self) -> None:
        self._streams: aiohttp.ClientSession | None = None
        self._posts: aiohttp.ClientSession | None = None

    def streams(self) -> aiohttp.ClientSession:
        if self._streams is None:
            # No pool limit here: a stream holds its connection for its life, as a socket does; the scenario sets how many.
            self._streams = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), read_bufsize=READ_BUFFER)
        return self._streams

    def posts(self) -> aiohttp.ClientSession:
        if self._posts is None:
            connector = aiohttp.TCPConnector(limit=POST_CONNECTIONS)
            self._posts = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT))
        return self._posts

    async def close(self) -> None:
        for session in (self._streams, self._posts):
            if session is not None:
                await session.close()
        self._streams = self._posts = None


class EventStreamClient:
    """One open stream: its events' `data:` as frames, its client frames as POSTs."""

    def __init__(self, sessions: Sessions, response: aiohttp.ClientResponse, frames_url: str, token: str | None) -> None:
        self._sessions = sessions
        self._response = response
        self._frames_url = frames_url
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._events = self._parse()
        self.stream_id = ""  # from the welcome: names this stream on the POSTs
        self.close_code: int | None = None  # the code of the server's `event: close`, as a socket's close code
        self.on_error: Callable[[str], None] = lambda _: None

    @classmethod
    async def open(cls, sessions: Sessions, url: str, token: str | None, connect_timeout: float) -> EventStreamClient:
        headers = {"Accept": "text/event-stream", **({"Authorization": f"Bearer {token}"} if token else {})}
        # The connect and the answer's head are bounded; the body is read for as long as the stream lives.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        response = await asyncio.wait_for(sessions.streams().get(url, headers=headers, timeout=timeout), connect_timeout)
        if response.status != 200:
            body = (await asyncio.wait_for(response.read(), connect_timeout))[:200]
            response.release()
            raise RuntimeError(f"stream answered {response.status}: {body!r}")
        base = url.split("/api/", 1)[0]
        return cls(sessions, response, base + FRAMES_PATH, token)

    async def _parse(self) -> AsyncIterator[str]:
        """The `data:` of each event (a frame); ends at the server's `event: close` or the end of the response."""
        event, data = "", []
        async for raw in self._response.content:
            line = raw.decode().rstrip("\r\n")
            if line:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "data":
                    data.append(value)
                elif field == "event":
                    event = value
                continue  # `id:` and `retry:` matter to a browser's own reconnect, not here
            if event == "close":  # data: {"code": 4408 | 1012 | ...}
                self.close_code = int(orjson.loads("\n".join(data) or "{}").get("code", 1006))
                return
            if data:
                yield "\n".join(data)
            event, data = "", []
        self.close_code = self.close_code or 1006  # the response ended without saying why

    def __aiter__(self) -> AsyncIterator[str]:
        return self._events

    async def recv(self) -> str:
        return await anext(self._events)

    async def send(self, frame: str) -> None:
        """POST one client frame to the stream; a refusal is reported (an ack that fails would stall the window)."""
        headers = {**self._auth, "Content-Type": "application/json", "Notify-Stream": self.stream_id}
        async with self._sessions.posts().post(self._frames_url, data=frame, headers=headers) as answer:
            if answer.status not in {200, 204}:
                self.on_error(f"POST frames: {answer.status}: {(await answer.read())[:200]!r}")

    async def close(self) -> None:
        self.abort()

    def abort(self) -> None:
        self._response.close()
