"""Deleting notifications, by retention or by the operator, with every unread counter kept exact."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from .. import conf
from ..models import Notification, UserStream
from .streams import lock_streams


def delete_notifications(ids: Sequence[int]) -> int:
    """Delete notifications (any recipients)."""
    with transaction.atomic():
        return _delete_and_recount(Notification.objects.filter(id__in=ids))


def prune(*, now: datetime | None = None) -> int:
    """Delete expired notifications and those older than retention; remember the highest pruned seq."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=conf.get().retention_days)
    doomed = Notification.objects.filter(created_at__lt=cutoff) | Notification.objects.filter(expires_at__lt=now)
    with transaction.atomic():
        old: dict[int, int] = defaultdict(int)
        for uid, seq in Notification.objects.filter(created_at__lt=cutoff).values_list("recipient_id", "seq"):
            old[uid] = max(old[uid], seq)
        for uid, seq in old.items():
            UserStream.objects.filter(user_id=uid, pruned_seq__lt=seq).update(pruned_seq=seq)
        return _delete_and_recount(doomed)


def _delete_and_recount(queryset: QuerySet[Notification]) -> int:
    """Delete rows under their streams' locks, so no concurrent read mark skews the counters."""
    lock_streams(sorted(set(queryset.values_list("recipient_id", flat=True))))
    unread_lost = Counter(queryset.filter(read_at__isnull=True).values_list("recipient_id", flat=True))
    for uid, lost in unread_lost.items():
        UserStream.objects.filter(user_id=uid).update(unread=F("unread") - lost)
    deleted, _ = queryset.delete()
    return int(deleted)
