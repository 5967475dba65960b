"""Connection tokens: short-lived JWTs an app's backend signs so its users' browsers reach the service.

The app names its users by its own ids (`PUT /api/v1/users/{username}`); its
backend signs `{"sub": username, "exp": ...}` with HS256 and
NOTIFY_CONNECTION_SECRET, and the browser presents it as `?token=` on the
socket or `Authorization: Bearer` on the `me/` endpoints. It reads only: it
never carries the publish or users scope. docs/integrate.md shows how a Django,
Rails or Node backend makes one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from . import conf

ALGORITHM = "HS256"
MAX_LIFETIME_SECONDS = 24 * 3600  # a token whose exp is further away than this is refused
LEEWAY_SECONDS = 30  # clock skew between the app's servers and ours


@dataclass(frozen=True)
class ConnectionToken:
    user: AbstractBaseUser
    expires_at: int  # the token's exp, a Unix time

    @property
    def credential(self) -> tuple[str, str]:
        """What a socket on it stands on, checked every heartbeat (auth.invalid_credentials)."""
        return ("connection", f"{self.user.pk}:{self.expires_at}")


def looks_like_one(secret: str) -> bool:
    """A compact JWS has three dot-separated parts; an API token never does."""
    return secret.count(".") == 2


def verify(token: str) -> ConnectionToken | None:
    """The active user this token names, or None: a bad signature, no or a far exp, expired, an unknown user."""
    secret = conf.get().connection_secret
    if not secret:
        return None
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}, leeway=LEEWAY_SECONDS)
    except jwt.PyJWTError:
        return None
    expires_at, username = claims["exp"], claims["sub"]
    if not isinstance(expires_at, int) or not isinstance(username, str) or expires_at > time.time() + MAX_LIFETIME_SECONDS:
        return None
    model = get_user_model()
    user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    if user is None or not getattr(user, "is_active", True):
        return None
    return ConnectionToken(user, expires_at)


def still_valid(credential_key: str, active_user_pks: set[str]) -> bool:
    """A socket's ("connection", "<user pk>:<exp>") credential holds while the token is unexpired and its user active."""
    user_pk, _, expires_at = credential_key.rpartition(":")
    return user_pk in active_user_pks and int(expires_at) + LEEWAY_SECONDS >= time.time()
