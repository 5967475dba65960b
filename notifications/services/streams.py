"""Users' streams (UserStream): their row locks serialize every write to a user's notifications.

Every writer locks streams in user id order, so no two writers deadlock.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from .. import storage
from ..errors import ServiceError
from ..models import UserStream


def lock_streams(user_ids: list[int]) -> dict[int, int]:
    """Lock the users' streams in id order, creating missing ones; return their heads."""
    if not user_ids:
        return {}
    locked = storage.current().user_in(UserStream.objects.select_for_update(), user_ids).order_by("user_id")
    heads = dict(locked.values_list("user_id", "head_seq"))
    missing = [uid for uid in user_ids if uid not in heads]
    if missing:
        create_streams(missing)
        heads.update(
            UserStream.objects.select_for_update().filter(user_id__in=missing).order_by("user_id").values_list("user_id", "head_seq")
        )
    return heads


def locked_stream(user_id: int) -> UserStream:
    stream = UserStream.objects.select_for_update().filter(user_id=user_id).first()
    return stream or UserStream.objects.get_or_create(user_id=user_id)[0]


def create_streams(user_ids: list[int]) -> None:
    """Streams for users who have none yet; an unknown user fails the publish before anything is written."""
    known = set(get_user_model()._default_manager.filter(pk__in=user_ids).values_list("pk", flat=True))
    unknown = sorted(set(user_ids) - known)
    if unknown:
        raise ServiceError("unknown_recipient", f"no such user: {', '.join(map(str, unknown[:10]))}", status=404)
    UserStream.objects.bulk_create([UserStream(user_id=uid) for uid in user_ids], ignore_conflicts=True)
