"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from typing import Any

from notifications import services
from notifications.models import Notification, UserStream

# A question with two answers and a link (which is not an answer): what the action tests ask.
ACTIONS: Any = [
    {"id": "approve", "label": "Approve", "style": "primary"},
    {"id": "reject", "label": "Reject", "style": "danger"},
    {"id": "logs", "label": "Logs", "style": "secondary", "url": "/logs/42"},
]


def ask_to_deploy(user: Any) -> services.Delivery:
    return services.notify(recipient_ids=[user.id], content=services.Content.checked(title="Deploy?", actions=ACTIONS)).deliveries[0]


def unread_rows(user_id: int) -> int:
    """The user's unread notifications counted row by row: what the maintained counter must equal."""
    return Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).count()


def counted_rows(user_id: int) -> tuple[int, int]:
    """(unread, unseen) counted row by row: unread and unseen notifications in the inbox (neither archived nor snoozed)."""
    in_inbox = Notification.objects.filter(recipient_id=user_id, archived_at__isnull=True, snoozed_until__isnull=True)
    seen_seq = UserStream.objects.get(user_id=user_id).seen_seq
    return in_inbox.filter(read_at__isnull=True).count(), in_inbox.filter(seq__gt=seen_seq).count()
