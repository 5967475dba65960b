"""`GET /api/v1/me/stream` (Server-Sent Events) and `POST /api/v1/me/frames`: the socket's protocol over plain HTTP.

For networks that strip `Upgrade` (docs/protocol.md, "The event stream"). Plain
async Django views, not ninja operations: the stream is a streaming response
served on the event loop its hub runs on, and neither view holds a thread;
each database step is its own database_sync_to_async call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from ninja.utils import check_csrf

from .. import auth, availability, conf, connection, connection_tokens, event_stream, protocol, rate_limits
from ..admission import admission
from ..connection import since_from
from ..errors import ServiceError
from ..middleware import unavailable_response
from ..models import Scope
from ..origins import allowed_origin, trusted_origin
from . import error_response, rate_limited
from .security import Forbidden, Unauthenticated

STREAM_HEADER = "Notify-Stream"  # names the stream a POSTed frame belongs to (its `welcome` says it)


@dataclass(frozen=True)
class Identity:
    user_id: int
    credential: auth.Credential  # checked every heartbeat, as a socket's


def identify(request: HttpRequest, *, in_url: bool) -> Identity:
    """The caller as a socket's handshake judges it (auth.WebsocketAuthMiddleware), from an HTTP request.

    A Bearer token or an app's connection token; with `in_url` (the stream: EventSource
    sets no header) also `?token=` and a single-use `?ticket=`; else the session, from
    the site's own origin, with a CSRF token on a POST.
    """
    value = request.headers.get("Authorization")
    origin = request.headers.get("Origin")
    if value is not None:
        scheme, _, secret = value.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("unauthenticated", "the Authorization header must be 'Bearer <token>'")
        return _bearer(secret.strip())
    if in_url and "token" in request.GET:
        if origin is not None and not allowed_origin(_scope(request)):
            raise Forbidden("forbidden_origin", "this origin may not use connection tokens here")
        return _connection_token(request.GET["token"])
    if in_url and "ticket" in request.GET:
        redeemed = auth.redeem_ticket(request.GET["ticket"])
        if redeemed is None:
            raise Unauthenticated("unauthenticated", "the ticket is unknown, used or expired")
        return Identity(redeemed.user.pk, redeemed.credential)
    user = request.user
    if not user.is_authenticated:
        raise Unauthenticated("unauthenticated", "send 'Authorization: Bearer <token>', a ticket, or log in")
    # A browser sends Origin on a cross-origin request: the session counts only from the site's own.
    if origin is not None and not trusted_origin(_scope(request)):
        raise Forbidden("forbidden_origin", "a session counts only on requests from this site's own pages")
    if request.method == "POST" and check_csrf(request) is not None:
        raise Forbidden("csrf_failed", "send the CSRF token (X-CSRFToken header) with a session")
    return Identity(user.pk, ("session", request.session.session_key or ""))


def _scope(request: HttpRequest) -> dict[str, Any]:
    """What origins.py reads of a handshake, from a request (under ASGI or not)."""
    wanted = (("Host", b"host"), ("Origin", b"origin"))
    headers = [(name, request.headers[key].encode("latin1")) for key, name in wanted if key in request.headers]
    return {"headers": headers, "scheme": request.scheme}


def _bearer(secret: str) -> Identity:
    if connection_tokens.looks_like_one(secret):
        return _connection_token(secret)
    token = auth.authenticate_token(secret)
    if token is None:
        raise Unauthenticated("unauthenticated", "the token is unknown, revoked, or its user is inactive")
    if Scope.READ not in token.scopes:
        raise Forbidden("insufficient_scope", "this token lacks the 'read' scope")
    return Identity(token.user_id, ("token", str(token.pk)))


def _connection_token(secret: str) -> Identity:
    connected = connection_tokens.verify(secret)
    if connected is None:
        raise Unauthenticated("unauthenticated", "the connection token is forged, expired, or names an unknown user")
    return Identity(connected.user.pk, connected.credential)


def _last_event_id(request: HttpRequest) -> tuple[int | None, str | None]:
    """Where to resume: the browser's `Last-Event-ID` on its own reconnect, else `?since=` as on a socket."""
    last = request.headers.get("Last-Event-ID")
    query = parse_qs(request.META.get("QUERY_STRING", ""))
    if last is not None and last.strip():
        query["since"] = [last.strip()]
    return since_from(query)


@csrf_exempt  # GET only; nothing changes state
async def stream(request: HttpRequest) -> HttpResponseBase:
    if request.method != "GET":
        return error_response(request, 405, "method_not_allowed", "GET the stream; POST frames to /api/v1/me/frames")
    if not await availability.ready():
        return unavailable_response()
    # As a socket's handshake: a process bringing up too many connections at once refuses the rest (admission.py).
    release = admission.try_enter()
    if release is None:
        return unavailable_response()
    try:
        try:
            who = await database_sync_to_async(identify, thread_sensitive=False)(request, in_url=True)
        except ServiceError as e:
            return error_response(request, e.status, e.code, e.message)
        events = event_stream.EventStream(user_id=who.user_id, credential=who.credential, batching=request.GET.get("batch") == "1")
        try:
            await events.open(*_last_event_id(request))
        except BaseException:
            events.stop()
            raise
    except OperationalError as e:
        if not availability.is_down_error(e):
            raise
        return unavailable_response()
    finally:
        release()  # up (welcome and the first replay queued) or refused
    response = StreamingHttpResponse(events.body(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on as it comes
    return response


@csrf_exempt  # a session's POST is checked in identify(), as ninja checks the API's
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
        who = await database_sync_to_async(identify, thread_sensitive=False)(request, in_url=False)
    except ServiceError as e:
        return error_response(request, e.status, e.code, e.message)
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
