"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from notifications.models import Notification


def unread_rows(user_id: int) -> int:
    """The user's unread notifications counted row by row: what the maintained counter must equal."""
    return Notification.objects.filter(recipient_id=user_id, read_at__isnull=True).count()
