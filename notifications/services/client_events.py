"""A client's own event ids (docs/protocol.md, "Event ids"): a change is applied at most once per (user, id) and answered every time.

Both are called under the user's stream lock, inside the change's transaction: the id is
recorded if and only if the change is.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ..models import ClientEvent


def first_reply(user_id: int, client_id: str) -> dict[str, Any] | None:
    """What the change with this id was answered the first time, or None if it is new."""
    reply: dict[str, Any] | None = ClientEvent.objects.filter(user_id=user_id, client_id=client_id).values_list("reply", flat=True).first()
    return reply


def record(user_id: int, client_id: str, *, op: str, reply: dict[str, Any]) -> None:
    ClientEvent.objects.create(user_id=user_id, client_id=client_id, op=op, created_at=timezone.now(), reply=reply)
