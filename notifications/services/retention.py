"""Retention: expired notifications and those older than NOTIFY_RETENTION_DAYS go, with every counter kept exact.

Inbox events go at the same age as notifications (a resume from below what is gone gets
`reset`), client event ids after NOTIFY_CLIENT_EVENT_DAYS.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, OuterRef, QuerySet
from django.utils import timezone

from .. import conf
from ..models import ClientEvent, InboxEvent, Notification, UserStream
from .streams import lock_streams


def prune(*, now: datetime | None = None) -> int:
    """Delete expired notifications and those older than retention; remember the highest pruned seq. Returns how many notifications."""
    now = now or timezone.now()
    settings = conf.get()
    cutoff = now - timedelta(days=settings.retention_days)
    doomed = Notification.objects.filter(created_at__lt=cutoff) | Notification.objects.filter(expires_at__lt=now)
    old_events = InboxEvent.objects.filter(created_at__lt=cutoff)
    with transaction.atomic():
        old: dict[int, int] = defaultdict(int)
        for rows in (
            Notification.objects.filter(created_at__lt=cutoff).values_list("recipient_id", "seq"),
            old_events.values_list("user_id", "seq"),
        ):
            for uid, seq in rows:
                old[uid] = max(old[uid], seq)
        for uid, seq in old.items():
            UserStream.objects.filter(user_id=uid, pruned_seq__lt=seq).update(pruned_seq=seq)
        old_events.delete()
        ClientEvent.objects.filter(created_at__lt=now - timedelta(days=settings.client_event_days)).delete()
        return _delete_and_recount(doomed)


def _delete_and_recount(queryset: QuerySet[Notification]) -> int:
    """Delete rows under their streams' locks, so no concurrent change skews the counters.

    What they counted is taken off: unread and unseen count only notifications in the inbox.
    """
    lock_streams(sorted(set(queryset.values_list("recipient_id", flat=True))))
    in_inbox = queryset.filter(archived_at__isnull=True, snoozed_until__isnull=True)
    unread_lost = Counter(in_inbox.filter(read_at__isnull=True).values_list("recipient_id", flat=True))
    seen = UserStream.objects.filter(user_id=OuterRef("recipient_id")).values("seen_seq")[:1]
    unseen_lost = Counter(in_inbox.alias(seen_seq=seen).filter(seq__gt=F("seen_seq")).values_list("recipient_id", flat=True))
    for uid in unread_lost.keys() | unseen_lost.keys():
        UserStream.objects.filter(user_id=uid).update(unread=F("unread") - unread_lost[uid], unseen=F("unseen") - unseen_lost[uid])
    deleted, _ = queryset.delete()
    return int(deleted)
