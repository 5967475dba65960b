"""Read marks: written under the user's stream lock so the unread counter never drifts, then sent to every device."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .. import protocol, push
from ..models import Notification, UserStream
from .streams import locked_stream


@dataclass(frozen=True)
class ReadResult:
    changed_ids: list[int]
    up_to_seq: int | None
    unread: int
    head_seq: int  # the unread count covers every seq up to here


def mark_read(*, user_id: int, ids: Sequence[int] = (), everything: bool = False) -> ReadResult:
    """Mark the user's notifications read (ids not theirs are ignored) and tell every device."""
    with transaction.atomic():
        stream = locked_stream(user_id)
        unread = Notification.objects.filter(recipient_id=user_id, read_at__isnull=True)
        if everything:
            changed: list[int] = []
            count = unread.filter(seq__lte=stream.head_seq).update(read_at=timezone.now())
            up_to_seq: int | None = stream.head_seq
        else:
            changed = list(unread.filter(id__in=ids).values_list("id", flat=True))
            count = Notification.objects.filter(id__in=changed).update(read_at=timezone.now())
            up_to_seq = None
        result = _adjust_unread(stream, -count, changed, up_to_seq)
        if count:
            frame = protocol.read_event(ids=changed, up_to_seq=up_to_seq, unread=result.unread, head_seq=result.head_seq)
            transaction.on_commit(lambda: push.user_event(user_id, frame))
    return result


def mark_unread(*, user_id: int, ids: Sequence[int]) -> ReadResult:
    with transaction.atomic():
        stream = locked_stream(user_id)
        changed = list(Notification.objects.filter(recipient_id=user_id, id__in=ids, read_at__isnull=False).values_list("id", flat=True))
        count = Notification.objects.filter(id__in=changed).update(read_at=None)
        result = _adjust_unread(stream, count, changed, None)
        if count:
            frame = protocol.unread_event(ids=changed, unread=result.unread, head_seq=result.head_seq)
            transaction.on_commit(lambda: push.user_event(user_id, frame))
    return result


def mark_read_ids(ids: Sequence[int]) -> int:
    """Mark these notifications read, whoever they belong to (the operator's bulk action). Returns how many changed."""
    with transaction.atomic():
        return sum(len(mark_read(user_id=uid, ids=user_ids).changed_ids) for uid, user_ids in _ids_by_recipient(ids).items())


def mark_unread_ids(ids: Sequence[int]) -> int:
    """Mark these notifications unread, whoever they belong to. Returns how many changed."""
    with transaction.atomic():
        return sum(len(mark_unread(user_id=uid, ids=user_ids).changed_ids) for uid, user_ids in _ids_by_recipient(ids).items())


def _ids_by_recipient(ids: Sequence[int]) -> dict[int, list[int]]:
    """Ids grouped by recipient, recipients in id order: streams are then locked in the order every writer uses."""
    grouped: dict[int, list[int]] = defaultdict(list)
    for id_, uid in Notification.objects.filter(id__in=ids).order_by("recipient_id", "id").values_list("id", "recipient_id"):
        grouped[uid].append(id_)
    return grouped


def _adjust_unread(stream: UserStream, delta: int, changed: list[int], up_to_seq: int | None) -> ReadResult:
    if delta:
        UserStream.objects.filter(pk=stream.pk).update(unread=F("unread") + delta)
    return ReadResult(changed, up_to_seq, stream.unread + delta, stream.head_seq)
