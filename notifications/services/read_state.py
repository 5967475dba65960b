"""Read marks as the dashboard, the admin and `POST /me/notifications/read` ask for them: inbox changes (inbox.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction

from .. import changes
from ..changes import Change, Filter
from ..models import Notification
from . import inbox


@dataclass(frozen=True)
class ReadResult:
    changed_ids: list[int]
    up_to_seq: int | None
    unread: int
    head_seq: int  # the unread count covers every seq up to here
    outcome: inbox.Outcome


def mark_read(*, user_id: int, ids: Sequence[int] = (), everything: bool = False, client_id: str | None = None) -> ReadResult:
    """Mark the user's notifications read (ids not theirs are ignored), or all in the inbox; every device hears of it."""
    change = Change(changes.READ, filter=Filter()) if everything else Change(changes.READ, ids=tuple(ids))
    return _result(inbox.apply(user_id=user_id, change=change, client_id=client_id))


def mark_unread(*, user_id: int, ids: Sequence[int], client_id: str | None = None) -> ReadResult:
    return _result(inbox.apply(user_id=user_id, change=Change(changes.UNREAD, ids=tuple(ids)), client_id=client_id))


def mark_read_ids(ids: Sequence[int]) -> int:
    """Mark these notifications read, whoever they belong to (the operator's bulk action). Returns how many changed."""
    return _each_recipient(changes.READ, ids)


def mark_unread_ids(ids: Sequence[int]) -> int:
    """Mark these notifications unread, whoever they belong to. Returns how many changed."""
    return _each_recipient(changes.UNREAD, ids)


def delete_notifications(ids: Sequence[int]) -> int:
    """Delete these notifications, whoever they belong to: gone on every device of each (the operator's action)."""
    return _each_recipient(changes.DELETE, ids)


def _each_recipient(op: str, ids: Sequence[int]) -> int:
    with transaction.atomic():
        return sum(
            inbox.apply(user_id=uid, change=Change(op, ids=tuple(chunk))).changed
            for uid, user_ids in _ids_by_recipient(ids).items()
            for chunk in _chunks(user_ids)
        )


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + changes.MAX_IDS] for i in range(0, len(ids), changes.MAX_IDS)]


def _ids_by_recipient(ids: Sequence[int]) -> dict[int, list[int]]:
    """Ids grouped by recipient, recipients in id order: streams are then locked in the order every writer uses."""
    grouped: dict[int, list[int]] = defaultdict(list)
    for id_, uid in Notification.objects.filter(id__in=ids).order_by("recipient_id", "id").values_list("id", "recipient_id"):
        grouped[uid].append(id_)
    return grouped


def _result(outcome: inbox.Outcome) -> ReadResult:
    return ReadResult(outcome.changed_ids, outcome.up_to_seq, outcome.unread, outcome.head_seq, outcome)
