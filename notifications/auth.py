"""API tokens and WebSocket tickets: issue, check, revoke; and the WebSocket auth middleware.

Secrets are shown once and kept only as SHA-256 digests. A browser socket is
authenticated by its session cookie behind an origin check; a service by
`Authorization: Bearer`; a browser on another origin by a single-use ticket.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from . import availability, conf
from .errors import ServiceError
from .middleware import close_socket_unavailable
from .models import ApiToken, Scope, WsTicket

TOKEN_PREFIX = "ntf_"
VALID_SCOPES = {s.value for s in Scope}


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


def authenticate_token(secret: str) -> ApiToken | None:
    """The live token for this secret, with its user, or None."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    token = ApiToken.objects.select_related("user").filter(digest=_digest(secret), revoked_at__isnull=True).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def issue_ticket(*, user: AbstractBaseUser) -> str:
    secret = secrets.token_urlsafe(32)
    WsTicket.objects.filter(expires_at__lt=timezone.now()).delete()
    WsTicket.objects.create(
        digest=_digest(secret), user_id=user.pk, expires_at=timezone.now() + timedelta(seconds=conf.get().ticket_seconds)
    )
    return secret


def redeem_ticket(secret: str) -> AbstractBaseUser | None:
    """Single use: the ticket row is deleted by the request that redeems it."""
    with transaction.atomic():
        ticket = WsTicket.objects.select_for_update().select_related("user").filter(digest=_digest(secret)).first()
        if ticket is None:
            return None
        ticket.delete()
    if ticket.expires_at < timezone.now() or not ticket.user.is_active:
        return None
    return ticket.user


def invalid_credentials(credentials: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (kind, key) credentials no longer hold: logged out, revoked, deactivated."""
    by_kind: dict[str, set[str]] = {"session": set(), "token": set(), "user": set()}
    for kind, key in credentials:
        by_kind[kind].add(key)
    invalid: set[tuple[str, str]] = set()
    if by_kind["session"]:
        live = _live_sessions(by_kind["session"])
        invalid |= {("session", key) for key in by_kind["session"] - live}
    if by_kind["token"]:
        ids = {int(k) for k in by_kind["token"]}
        live_ids = set(ApiToken.objects.filter(id__in=ids, revoked_at__isnull=True, user__is_active=True).values_list("id", flat=True))
        invalid |= {("token", str(i)) for i in ids - live_ids}
    if by_kind["user"]:
        ids = {int(k) for k in by_kind["user"]}
        active = set(get_user_model().objects.filter(id__in=ids, is_active=True).values_list("id", flat=True))
        invalid |= {("user", str(i)) for i in ids - active}
    return invalid


def _live_sessions(keys: set[str]) -> set[str]:
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.db":
        return set(Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now()).values_list("session_key", flat=True))
    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    return {key for key in keys if store().exists(key)}


# --- WebSocket -----------------------------------------------------------------


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin1"))
    return None


class _CredentialFromSession:
    """Inside AuthMiddlewareStack: name the session the socket stands on, for heartbeat checks."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        session = scope.get("session")
        key = session.session_key if session is not None else None
        scope["credential"] = ("session", key or "")
        return await self.app(scope, receive, send)


class WebsocketAuthMiddleware:
    """Bearer token or ticket, else session cookie behind the origin check."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookie_app = AllowedHostsOriginValidator(AuthMiddlewareStack(_CredentialFromSession(app)))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if not await availability.ready():
            return await close_socket_unavailable(receive, send)
        authorization = _header(scope, b"authorization")
        query = parse_qs(scope.get("query_string", b"").decode("latin1"))
        if authorization is not None:
            # Browsers cannot set this header on a WebSocket, so no origin check is needed.
            scheme, _, secret = authorization.partition(" ")
            token = await database_sync_to_async(authenticate_token)(secret.strip()) if scheme.lower() == "bearer" else None
            if token is not None and Scope.READ in token.scopes:
                scope = {**scope, "user": token.user, "credential": ("token", str(token.pk))}
            else:
                scope = {**scope, "user": AnonymousUser(), "credential": ("token", "")}
            return await self.app(scope, receive, send)
        if "ticket" in query:
            user = await database_sync_to_async(redeem_ticket)(query["ticket"][0])
            credential = ("user", str(user.pk)) if user is not None else ("user", "")
            return await self.app({**scope, "user": user or AnonymousUser(), "credential": credential}, receive, send)
        if _header(scope, b"origin") is None:
            # Not a browser (browsers always send Origin): no cookie auth without
            # the origin check, but say 4401 rather than refuse the handshake.
            return await self.app({**scope, "user": AnonymousUser(), "credential": ("session", "")}, receive, send)
        return await self.cookie_app(scope, receive, send)
