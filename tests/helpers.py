"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from notifications.models import Notification, UserStream


def unread_rows(user_id: int) -> int:
    """The user's unread notifications counted row by row: what the maintained counter must equal."""
    return Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).count()


def counted_rows(user_id: int) -> tuple[int, int]:
    """(unread, unseen) counted row by row: unread and unseen notifications in the inbox (neither archived nor snoozed)."""
    in_inbox = Notification.objects.filter(recipient_id=user_id, archived_at__isnull=True, snoozed_until__isnull=True)
    seen_seq = UserStream.objects.get(user_id=user_id).seen_seq
    return in_inbox.filter(read_at__isnull=True).count(), in_inbox.filter(seq__gt=seen_seq).count()
