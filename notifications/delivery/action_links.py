"""Signed one-click answers: a link (email digest) or a token (Web Push) that answers one action of one notification.

Signed as the unsubscribe token is (django.core.signing, its own salt), so it works without logging
in and cannot be made for another user, notification or action. It names the notification by its
seq, as the `action` frame does: a notification deleted or pruned since answers `not_found`.
The page behind it (away_views.action) shows a confirmation on GET and answers on POST only,
so a link scanner that follows every link answers nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from django.core import signing
from django.urls import reverse

from .. import rules
from .base import Action

_SALT = "notifications.action"


@dataclass(frozen=True)
class ActionToken:
    user_id: int
    seq: int
    action: str


def action_token(*, user_id: int, seq: int, action: str) -> str:
    return signing.dumps({"u": user_id, "s": seq, "a": action}, salt=_SALT)


def read_action_token(token: str) -> ActionToken | None:
    """What a token we signed names, or None for anything else."""
    try:
        value = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(value, dict):
        return None
    user_id, seq, action = value.get("u"), value.get("s"), value.get("a")
    if not (isinstance(user_id, int) and isinstance(seq, int) and isinstance(action, str) and rules.SLUG_RE.match(action)):
        return None
    return ActionToken(user_id, seq, action)


def answers(actions: Sequence[Action]) -> list[Action]:
    """The actions a user answers (those without a url): the ones a one-click link is made for."""
    return [a for a in actions if not a.get("url")]


def action_path() -> str:
    return reverse("action")


def action_url(public_url: str, token: str) -> str:
    return f"{public_url}{action_path()}?{urlencode({'token': token})}"
