"""`GET /api/v1/me/stream` (Server-Sent Events) and `POST /api/v1/me/frames`: the socket's protocol over plain HTTP.

For networks that strip `Upgrade` (docs/protocol.md, "The event stream"). A stream is
opened as a socket is: the same authentication (auth.authenticate, on the request's
scope), admission and hub. Two doors lead to it. `event_stream_application`, ASGI
middleware in front of Django (project/asgi.py; embed.http_application for a host),
serves the stream and a stream's own frames without Django's request cycle: under
ASGI every sync middleware is a hop to the one thread they all share, which halved
the streams' connect rate. The Django views below serve the same URLs for a host
without it, and every other frame. Neither holds a thread per stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from ninja.utils import check_csrf

from .. import auth, availability, conf, connection, event_stream, protocol, rate_limits
from ..admission import admission
from ..connection import since_from
from ..errors import ServiceError
from ..middleware import unavailable_response
from ..origins import header
from . import error_response, rate_limited

STREAM_HEADER = "Notify-Stream"  # names the stream a POSTed frame belongs to (its `welcome` says it)
# What a stream's own process answers from the stream's state alone: its window, its replay,
# a ping. Every other frame reads or writes the database and is authenticated as any API call.
STREAM_OWN_FRAMES = (protocol.Ack, protocol.Resume, protocol.Ping)
STREAM_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # nginx: pass each event on

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Asgi = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def refusal(status: int, code: str, message: str) -> HttpResponse:
    """The API's JSON error, for either door (no ninja request needed)."""
    response = JsonResponse({"code": code, "message": message, "fields": {}}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="notifications"'
    return response


async def open_stream(scope: dict[str, Any]) -> event_stream.EventStream | HttpResponse:
    """The caller's stream, welcomed with its first replay queued; or the response that refuses it."""
    if not await availability.ready():
        return unavailable_response()
    # As a socket's handshake: a process bringing up too many connections at once refuses the rest (admission.py).
    release = admission.try_enter()
    if release is None:
        return unavailable_response()
    try:
        try:
            handshake = await auth.authenticate(scope)
        except auth.ForeignOrigin as e:
            return refusal(403, "forbidden_origin", str(e))
        if handshake.user_id is None:
            return refusal(401, "unauthenticated", "send 'Authorization: Bearer <token>', a connection token, a ticket, or log in")
        query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        events = event_stream.EventStream(batching=query.get("batch") == ["1"])
        try:
            await events.open(handshake, *_resume_point(scope, query))
        except BaseException:
            events.stop()
            raise
        return events
    except OperationalError as e:
        if not availability.is_down_error(e):
            raise
        return unavailable_response()
    finally:
        release()  # up (welcome and the first replay queued) or refused


def _resume_point(scope: dict[str, Any], query: dict[str, list[str]]) -> tuple[int | None, str | None]:
    """Where to resume: the browser's `Last-Event-ID` on its own reconnect, else `?since=` as on a socket."""
    last = (header(scope, b"last-event-id") or "").strip()
    return since_from({**query, "since": [last]} if last else query)


def request_scope(request: HttpRequest) -> dict[str, Any]:
    """A request as auth.authenticate reads a scope: its headers, query and scheme (under ASGI or not)."""
    headers = [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in request.headers.items()]
    return {
        "type": "http",
        "headers": headers,
        "scheme": request.scheme,
        "query_string": request.META.get("QUERY_STRING", "").encode("latin1"),
    }


# --- in front of Django ---------------------------------------------------------------


def event_stream_application(app: Asgi) -> Asgi:
    """ASGI middleware for the "http" entry: the stream, and a stream's own frames, served before Django.

    An event stream's client POSTs an ack every second or so. As an API request each
    was a token lookup, a rate-limit count and Django's middleware: most of a stream's
    cost in the fan-out (docs/benchmarks.md). An ack, resume or ping naming, in
    `Notify-Stream`, a stream this process serves needs none of it. The stream id is
    the credential: unguessable, carried only by the stream's `welcome` to a reader
    whose own credential the stream checks every heartbeat (it ends, and its id with
    it, once that is gone). These frames spend the stream's frame budget, as on a
    socket. Anything else, including a frame this cannot parse, goes on to Django
    with its body untouched.
    """

    async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET" and scope.get("path") == _path("me-stream"):
            return await _serve_stream(scope, receive, send)
        held = _held_stream(scope)
        if held is None:
            return await app(scope, receive, send)
        body, ended = await _read_body(receive, limit=held.settings.max_frame_bytes)
        frame = _own_frame(body) if ended else None
        if frame is None:
            return await app(scope, _replaying(body, ended, receive), send)
        status, text = await _answer_own(frame, held)
        headers = [(b"content-type", b"application/json"), (b"vary", b"Origin")]
        origin = header(scope, b"origin")
        if origin is not None and origin in held.settings.allowed_origins:
            headers.append((b"access-control-allow-origin", origin.encode("latin1")))
        if status == 429:
            headers.append((b"retry-after", b"1"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text.encode()})

    return application


@cache
def _path(name: str) -> str:
    return reverse(name)


async def _serve_stream(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    opened = await open_stream(scope)
    if isinstance(opened, HttpResponse):
        headers = [(k.encode("latin1"), v.encode("latin1")) for k, v in opened.items()]
        await send({"type": "http.response.start", "status": opened.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": opened.content})
        return
    headers = [(k.lower().encode(), v.encode()) for k, v in STREAM_HEADERS.items()]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    events = opened.body()
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        while True:
            chunk = asyncio.ensure_future(anext(events))
            await asyncio.wait({chunk, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not chunk.done():  # the client went first
                chunk.cancel()
                return
            try:
                part = chunk.result()
            except StopAsyncIteration:  # the stream ended (its `close` event is out)
                await send({"type": "http.response.body", "body": b""})
                return
            await send({"type": "http.response.body", "body": part, "more_body": True})
    finally:
        gone.cancel()
        await events.aclose()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _held_stream(scope: dict[str, Any]) -> event_stream.EventStream | None:
    if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != _path("me-frames"):
        return None
    return event_stream.held(header(scope, STREAM_HEADER.lower().encode()))


async def _read_body(receive: Receive, *, limit: int) -> tuple[bytes, bool]:
    """The request body, up to just past `limit`; and whether that was all of it."""
    body = b""
    while len(body) <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return body, False  # the client went; Django gets the disconnect
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body, True
    return body, False


def _replaying(body: bytes, ended: bool, receive: Receive) -> Receive:
    """`receive` for Django: first what was read, then the rest as it comes."""
    first = True

    async def replay() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": body, "more_body": not ended}
        return await receive()

    return replay


def _own_frame(body: bytes) -> protocol.ClientFrame | None:
    try:
        frame = protocol.parse(body.decode())
    except (UnicodeDecodeError, protocol.FrameError):
        return None
    return frame if isinstance(frame, STREAM_OWN_FRAMES) else None


async def _answer_own(frame: protocol.ClientFrame, held: event_stream.EventStream) -> tuple[int, str]:
    if not held.take_frame_token():
        return 429, protocol.error("rate_limited", "too many frames on this stream; slow down")
    answer = await connection.answer(frame, user_id=held.user_id, connection=held)
    return (200, answer) if answer is not None else (204, "")


# --- Django's views: the same, for a host without the middleware, and every other frame ---


@csrf_exempt  # GET only; nothing changes state
async def stream(request: HttpRequest) -> HttpResponseBase:
    if request.method != "GET":
        return error_response(request, 405, "method_not_allowed", "GET the stream; POST frames to /api/v1/me/frames")
    opened = await open_stream(request_scope(request))
    if isinstance(opened, HttpResponse):
        return opened
    response = StreamingHttpResponse(opened.body())
    for name, value in STREAM_HEADERS.items():
        response[name] = value
    return response


@csrf_exempt  # a session's POST is checked below, as ninja checks the API's
async def frames(request: HttpRequest) -> HttpResponse:
    """One client frame, as on the socket; the answer (`reply`, `pong`, `error`) is the response body."""
    if request.method != "POST":
        return error_response(request, 405, "method_not_allowed", "POST one client frame")
    if not await availability.ready():
        return unavailable_response()
    limits = conf.get().rate_limits
    address = rate_limits.client_address(request)
    retry_after = await database_sync_to_async(rate_limits.hit)(request, group="api_address", key=address, rate=limits.api_address)
    if retry_after is not None:
        return rate_limited(request, retry_after)
    try:
        who = await auth.authenticate(request_scope(request))
    except auth.ForeignOrigin as e:
        return refusal(403, "forbidden_origin", str(e))
    if who.user_id is None:
        return refusal(401, "unauthenticated", "send 'Authorization: Bearer <token>', a connection token, or log in")
    if who.credential[0] == "session" and check_csrf(request) is not None:
        return refusal(403, "csrf_failed", "send the CSRF token (X-CSRFToken header) with a session")
    retry_after = await database_sync_to_async(rate_limits.hit)(request, group="me", key=str(who.user_id), rate=limits.me)
    if retry_after is not None:
        return rate_limited(request, retry_after)
    if len(request.body) > conf.get().max_frame_bytes:
        return _frame(protocol.error("too_large", "the frame is too large"), 413)
    try:
        frame = protocol.parse(request.body.decode())
    except UnicodeDecodeError:
        return _frame(protocol.error("bad_json", "frame is not valid JSON"), 400)
    except protocol.FrameError as e:
        return _frame(e.frame(), 400)
    found = event_stream.find(request.headers.get(STREAM_HEADER), who.user_id)
    try:
        answer = await connection.answer(frame, user_id=who.user_id, connection=found)
    except ServiceError as e:
        return _frame(protocol.refusal(frame, e.code, e.message), e.status)
    except OperationalError as e:
        if not availability.is_down_error(e):
            raise
        return unavailable_response()
    return _frame(answer, 200) if answer is not None else HttpResponse(status=204)


def _frame(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="application/json")
