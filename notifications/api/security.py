"""Who is calling: a Bearer token with scopes, or a browser session with CSRF.

A present but bad Authorization header is a 401 on its own: it never falls
back to the session. Secrets are never logged (ninja's HttpBearer logs an
unexpected header under DEBUG; ours does not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from .. import auth, connection_tokens
from ..errors import ServiceError
from ..models import ApiToken, Scope


@dataclass(frozen=True)
class Caller:
    user: AbstractBaseUser
    token: ApiToken | None = None

    @property
    def user_id(self) -> int:
        return self.user.pk


class Unauthenticated(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class BearerToken(HttpBearer):
    """`Authorization: Bearer ntf_…` with the scope the operation needs."""

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> Caller | None:
        value = request.headers.get("Authorization")
        if value is None:
            return None
        scheme, _, secret = value.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("unauthenticated", "the Authorization header must be 'Bearer <token>'")
        return self.authenticate(request, secret.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Caller:
        if connection_tokens.looks_like_one(token):
            return self._connection(token)
        found = auth.authenticate_token(token)
        if found is None:
            raise Unauthenticated("unauthenticated", "the token is unknown, revoked, or its user is inactive")
        if self.scope not in found.scopes:
            raise Forbidden("insufficient_scope", f"this token lacks the {self.scope.value!r} scope")
        return Caller(found.user, found)

    def _connection(self, token: str) -> Caller:
        """An app's connection token: its user's own endpoints, read scope only."""
        connected = connection_tokens.verify(token)
        if connected is None:
            raise Unauthenticated("unauthenticated", "the connection token is forged, expired, or names an unknown user")
        if self.scope != Scope.READ:
            raise Forbidden("insufficient_scope", f"a connection token reads only; this needs a token with the {self.scope.value!r} scope")
        return Caller(connected.user)


class Session(APIKeyCookie):
    """A logged-in browser: Django's session cookie, and a CSRF token on unsafe methods."""

    param_name = settings.SESSION_COOKIE_NAME

    def __init__(self, *, staff_only: bool = False) -> None:
        super().__init__(csrf=True)
        self.staff_only = staff_only

    def __call__(self, request: HttpRequest) -> Caller | None:
        return self.authenticate(request, None)

    def authenticate(self, request: HttpRequest, key: Any) -> Caller | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if check_csrf(request) is not None:
            raise Forbidden("csrf_failed", "send the CSRF token (X-CSRFToken header) with a session")
        if self.staff_only and not user.is_staff:
            raise Forbidden("forbidden", "publishing needs a token with the 'publish' scope, or a staff session")
        return Caller(user)


PUBLISH = [BearerToken(Scope.PUBLISH), Session(staff_only=True)]
USERS = [BearerToken(Scope.USERS)]
WEBHOOKS = [BearerToken(Scope.WEBHOOKS)]
READ = [BearerToken(Scope.READ), Session()]


def caller(request: HttpRequest) -> Caller:
    """The authenticated caller (set by ninja from PUBLISH or READ)."""
    found = request.auth  # type: ignore[attr-defined]
    assert isinstance(found, Caller)
    return found
