"""API tokens and WebSocket tickets: issue, check, revoke; and the WebSocket auth middleware.

Secrets are shown once and kept only as SHA-256 digests. A browser socket is
authenticated by its session cookie behind an origin check; a service by
`Authorization: Bearer`; a browser on another origin by a single-use ticket.
"""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.sessions.models import Session
from django.db import connection, transaction
from django.http.cookie import parse_cookie
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from . import availability, conf, connection_tokens, selectors, users
from .admission import admission
from .errors import ServiceError
from .middleware import close_socket_unavailable
from .models import ApiToken, Scope, WsTicket
from .origins import allowed_origin, header, refuse_handshake, trusted_origin

TOKEN_PREFIX = "ntf_"
VALID_SCOPES = {s.value for s in Scope}

# What a socket stands on, checked every heartbeat: ("token", id), ("session", key),
# ("connection", "<user pk>:<exp>") for an app's connection token (connection_tokens.py),
# or ("user", id) for a ticket the operator's `manage.py listen` minted.
Credential = tuple[str, str]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    secret: str


def issue_token(*, user: AbstractBaseUser, scopes: Iterable[str], name: str = "") -> IssuedToken:
    scope_list = sorted(set(scopes))
    bad = [s for s in scope_list if s not in VALID_SCOPES]
    if bad or not scope_list:
        raise ServiceError("invalid_scope", f"scopes must be among {sorted(VALID_SCOPES)}", fields={"scopes": "invalid"})
    prefix = secrets.token_hex(4)
    secret = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(user_id=user.pk, name=name, prefix=prefix, digest=_digest(secret), scopes=scope_list)
    return IssuedToken(token, secret)


def revoke_token(token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


# last_used_at is kept to the minute: a token used again within it costs no write.
LAST_USED_PRECISION = timedelta(minutes=1)


def authenticate_token(secret: str) -> ApiToken | None:
    """The live token for this secret, with its user, or None (the socket path: authenticate_socket_token)."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = ApiToken.objects.select_related("user").filter(digest=_digest(secret), revoked_at__isnull=True).first()
    if token is None or not getattr(token.user, "is_active", True):
        return None
    if use_is_stale(token):
        record_token_use([token.pk])
    return token


@dataclass(frozen=True)
class SocketToken:
    token_id: int
    user_id: users.UserId
    scopes: list[str]
    use_is_stale: bool  # last_used_at is due to be written
    stream: selectors.StreamState  # the user's stream as the same statement saw it


def authenticate_socket_token(secret: str) -> SocketToken | None:
    """authenticate_token's rule for the WebSocket handshake, and the user's stream head, in one plain statement.

    The ORM took several times longer to build the query than PostgreSQL to
    answer it, on every connect, and a second statement for the head cost a
    quarter of the connect rate (docs/benchmarks.md); the socket needs no model
    instances. tests/test_auth.py holds both functions to the same answers.
    """
    if not secret.startswith(TOKEN_PREFIX):
        return None
    with connection.cursor() as cursor:
        cursor.execute(_socket_token_sql(), [timezone.now() - LAST_USED_PRECISION, _digest(secret)])
        row = cursor.fetchone()
    if row is None:
        return None
    token_id, user_id, scopes, stale, *stream = row
    scopes = scopes if isinstance(scopes, list) else json.loads(scopes)  # jsonb comes decoded; SQLite's text does not
    return SocketToken(token_id, users.to_pk(user_id), scopes, bool(stale), selectors.StreamState(*stream))


@functools.cache
def _socket_token_sql() -> str:
    user = get_user_model()._meta
    assert user.pk is not None
    active = "AND u.is_active" if users.has_active_flag() else ""
    return (
        "SELECT t.id, t.user_id, t.scopes, (t.last_used_at IS NULL OR t.last_used_at < %s),"
        f" {selectors.stream_state_columns('s')}"
        f" FROM {ApiToken._meta.db_table} t JOIN {user.db_table} u ON u.{user.pk.column} = t.user_id"
        f" LEFT JOIN {selectors.STREAM_TABLE} s ON s.user_id = t.user_id"
        f" WHERE t.digest = %s AND t.revoked_at IS NULL {active}"
    )


def use_is_stale(token: ApiToken) -> bool:
    return token.last_used_at is None or timezone.now() - token.last_used_at > LAST_USED_PRECISION


def record_token_use(token_ids: Iterable[int]) -> None:
    ApiToken.objects.filter(pk__in=list(token_ids)).update(last_used_at=timezone.now())


def issue_ticket(*, user: AbstractBaseUser, token: ApiToken | None = None, session_key: str = "") -> str:
    """A ticket minted by this token or this session (neither: by the operator), good while it is."""
    secret = secrets.token_urlsafe(32)
    WsTicket.objects.filter(expires_at__lt=timezone.now()).delete()
    WsTicket.objects.create(
        digest=_digest(secret),
        user_id=user.pk,
        expires_at=timezone.now() + timedelta(seconds=conf.get().ticket_seconds),
        token=token,
        session_key=session_key,
    )
    return secret


@dataclass(frozen=True)
class Redeemed:
    user: AbstractBaseUser
    credential: Credential  # what minted the ticket: the socket stands on it


def redeem_ticket(secret: str) -> Redeemed | None:
    """Single use: the ticket row is deleted by the request that redeems it."""
    with transaction.atomic():
        ticket = WsTicket.objects.select_for_update().select_related("user").filter(digest=_digest(secret)).first()
        if ticket is None:
            return None
        ticket.delete()
    if ticket.token_id is not None:
        credential = ("token", str(ticket.token_id))
    elif ticket.session_key:
        credential = ("session", ticket.session_key)
    else:
        credential = ("user", str(ticket.user_id))
    if ticket.expires_at < timezone.now() or invalid_credentials([credential]):
        return None
    return Redeemed(ticket.user, credential)


def invalid_credentials(credentials: Iterable[Credential]) -> set[Credential]:
    """Which of these credentials no longer hold: logged out, password changed, revoked, deactivated."""
    by_kind: dict[str, set[str]] = {"session": set(), "token": set(), "user": set(), "connection": set()}
    for kind, key in credentials:
        by_kind[kind].add(key)
    invalid: set[tuple[str, str]] = set()
    if by_kind["session"]:
        live_sessions = _live_sessions(by_kind["session"])
        invalid |= {("session", key) for key in by_kind["session"] - live_sessions.keys()}
    if by_kind["token"]:
        ids = {int(k) for k in by_kind["token"]}
        live_ids = set(
            ApiToken.objects.filter(id__in=ids, revoked_at__isnull=True, **users.active_only("user__")).values_list("id", flat=True)
        )
        invalid |= {("token", str(i)) for i in ids - live_ids}
    if by_kind["user"]:
        user_ids: set[users.UserId] = {users.to_pk(k) for k in by_kind["user"]}
        active = set(get_user_model()._default_manager.filter(pk__in=user_ids, **users.active_only()).values_list("pk", flat=True))
        invalid |= {("user", str(i)) for i in user_ids - active}
    if by_kind["connection"]:
        pks = {key.rpartition(":")[0] for key in by_kind["connection"]}
        live = {str(pk) for pk in get_user_model()._default_manager.filter(pk__in=pks, **users.active_only()).values_list("pk", flat=True)}
        invalid |= {("connection", key) for key in by_kind["connection"] if not connection_tokens.still_valid(key, live)}
    return invalid


def _live_sessions(keys: set[str]) -> dict[str, users.UserId]:
    """The sessions that still log their user in, and whose, judged as django.contrib.auth.get_user judges them.

    Read only: get_user flushes a session whose auth hash no longer matches the
    user's (a password change elsewhere), so HTTP on it is logged out; its
    sockets must close too. A hash from SECRET_KEY_FALLBACKS still counts, as there.
    """
    stored = _session_data(keys)
    user_ids = {key: users.to_pk(data[SESSION_KEY]) for key, data in stored.items() if SESSION_KEY in data}
    active: dict[Any, AbstractBaseUser] = {
        user.pk: user for user in get_user_model()._default_manager.filter(pk__in=set(user_ids.values()), **users.active_only())
    }
    live: dict[str, users.UserId] = {}
    for key, user_id in user_ids.items():
        data, user = stored[key], active.get(user_id)
        session_hash = data.get(HASH_SESSION_KEY)
        if user is None or not session_hash or data.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
            continue
        hashes = (user.get_session_auth_hash(), *user.get_session_auth_fallback_hash())
        if any(constant_time_compare(session_hash, h) for h in hashes):
            live[key] = user.pk
    return live


def _session_data(keys: set[str]) -> dict[str, dict[str, Any]]:
    """Each live session's data: for the database engine in one query."""
    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        rows = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now()).values_list("session_key", "session_data")
        return {key: store().decode(data) for key, data in rows}
    return {key: store(session_key=key).load() for key in keys}


# --- WebSocket -----------------------------------------------------------------


HANDSHAKE = "notify_handshake"  # the scope key WebsocketAuthMiddleware leaves its Handshake under


def _admitted_nothing() -> None:
    pass


@dataclass(frozen=True)
class Handshake:
    """What the socket's authentication hands the consumer, whichever way the socket came in."""

    user_id: users.UserId | None  # None: not authenticated (the consumer closes 4401)
    credential: Credential  # checked every heartbeat
    admitted: Callable[[], None] = _admitted_nothing  # releases this socket's place in admission once it is up
    # A token's check reads the user's stream head in the same statement (authenticate_socket_token):
    stream: selectors.StreamState | None = None
    stream_read_at: float = 0.0  # time.monotonic() before that statement
    token_use_stale: bool = False  # the token's last_used_at is due to be written (the hub batches it)


class ForeignOrigin(Exception):
    """A browser page on an origin that may not use this credential here (a socket's handshake is refused, a request is 403)."""


async def authenticate(scope: dict[str, Any]) -> Handshake:
    """Who opens this connection, from its ASGI scope: a socket's handshake or an event stream's request alike.

    `Authorization: Bearer` (an API token with `read`, or an app's connection token);
    `?token=` (a connection token, from the site's own origins or NOTIFY_ALLOWED_ORIGINS);
    a single-use `?ticket=`; else the session cookie, counted only from the site's own
    origin. Not authenticated: a Handshake with no user (the socket closes 4401, the
    stream answers 401). Raises ForeignOrigin.
    """
    authorization = header(scope, b"authorization")
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    if authorization is not None:
        # A browser sets this header only through fetch, behind CORS: the token alone decides.
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() == "bearer" and connection_tokens.looks_like_one(secret):
            return _connected(await database_sync_to_async(connection_tokens.verify, thread_sensitive=False)(secret))
        # Taken before the statement: a push the hub dispatches from here on may be missing from the head it reads.
        read_at = time.monotonic()
        # Any worker thread, not the one every thread-sensitive call of the process shares: connects in parallel.
        token = (
            await database_sync_to_async(authenticate_socket_token, thread_sensitive=False)(secret) if scheme.lower() == "bearer" else None
        )
        if token is None or Scope.READ not in token.scopes:
            return Handshake(None, ("token", ""))
        credential = ("token", str(token.token_id))
        return Handshake(token.user_id, credential, stream=token.stream, stream_read_at=read_at, token_use_stale=token.use_is_stale)
    if "token" in query:
        if header(scope, b"origin") is not None and not allowed_origin(scope):
            raise ForeignOrigin("this origin may not use connection tokens here")
        return _connected(await database_sync_to_async(connection_tokens.verify, thread_sensitive=False)(query["token"][0]))
    if "ticket" in query:
        redeemed = await database_sync_to_async(redeem_ticket, thread_sensitive=False)(query["ticket"][0])
        return Handshake(None, ("user", "")) if redeemed is None else Handshake(redeemed.user.pk, redeemed.credential)
    origin = header(scope, b"origin")
    if origin is None and scope["type"] == "websocket":
        # Not a browser (a browser's socket always sends Origin): no cookie counts without the origin check.
        return Handshake(None, ("session", ""))
    # A browser sends no Origin on a same-origin GET (EventSource): there the session counts, as on
    # any page of the site (the SameSite cookie keeps other sites out); a POST is CSRF-checked by its view.
    if origin is not None and not trusted_origin(scope):
        raise ForeignOrigin("a session counts only on connections from this site's own pages")
    key = parse_cookie(header(scope, b"cookie") or "").get(settings.SESSION_COOKIE_NAME, "")
    live = await database_sync_to_async(_live_sessions, thread_sensitive=False)({key}) if key else {}
    return Handshake(live.get(key), ("session", key))


class WebsocketAuthMiddleware:
    """The socket's door: availability, admission, then authenticate(); a Handshake for the consumer under HANDSHAKE."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if not await availability.ready():
            return await close_socket_unavailable(receive, send)
        # Before any database work: a process bringing up too many sockets at once refuses the rest
        # (admission.py); meanwhile our daphne server closes new connections as it accepts them (server.py).
        release = admission.try_enter()
        if release is None:
            return await close_socket_unavailable(receive, send)
        try:
            try:
                handshake = await authenticate(scope)
            except ForeignOrigin:
                return await refuse_handshake(receive, send)
            # The consumer releases once its socket is up; the finally covers every other way out.
            return await self.app({**scope, HANDSHAKE: replace(handshake, admitted=release)}, receive, send)
        finally:
            release()


def _connected(connected: connection_tokens.ConnectionToken | None) -> Handshake:
    if connected is None:
        return Handshake(None, ("connection", ""))
    return Handshake(connected.user.pk, connected.credential)
