"""The storage seam on any other database (the embedded SQLite default): plain ORM."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from django.db.models import F, Model, Q, QuerySet
from django.utils import timezone

from .. import protocol
from ..frames import COLUMNS, from_columns
from ..models import Notification, UserStream
from ..users import UserId
from .base import M, MissingStreams, NewRow

INSERT_BATCH = 1000


class PortableBackend:
    def insert(self, rows: list[NewRow]) -> None:
        counts = Counter(row.recipient_id for row in rows)
        users = sorted(counts)
        heads = dict(
            UserStream.objects.select_for_update().filter(user_id__in=users).order_by("user_id").values_list("user_id", "head_seq")
        )
        if len(heads) != len(users):
            raise MissingStreams([u for u in users if u not in heads])
        now = timezone.now()  # under the lock, so created_at follows seq order
        for row in rows:
            row.seq += heads[row.recipient_id]
            row.created_at = now
        users_by_count: dict[int, list[int]] = defaultdict(list)
        for uid, count in counts.items():
            users_by_count[count].append(uid)
        for count, uids in users_by_count.items():
            UserStream.objects.filter(user_id__in=uids).update(
                head_seq=F("head_seq") + count, unread=F("unread") + count, unseen=F("unseen") + count
            )
        fields = [f.attname for f in Notification._meta.concrete_fields if not f.primary_key]
        stored = Notification.objects.bulk_create(
            [Notification(**{name: getattr(row, name) for name in fields}) for row in rows], batch_size=INSERT_BATCH
        )
        for row, n in zip(rows, stored, strict=True):
            row.id = n.pk

    def user_in(self, queryset: QuerySet[M], user_ids: list[UserId]) -> QuerySet[M]:
        return queryset.filter(user_id__in=user_ids)

    def move_delivered(self, moved: dict[UserId, int], now: datetime) -> None:
        for user_id, seq in moved.items():
            UserStream.objects.filter(user_id=user_id).update(delivered_seq=seq, delivered_at=now)

    def replay_frames(self, user_id: UserId, *, since: int, head_seq: int, limit: int, now: datetime) -> list[tuple[int, str]]:
        rows = Notification.objects.filter(recipient_id=user_id, seq__gt=since, seq__lte=head_seq).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )
        # Tuples, not model instances: a third of the cost.
        return [(row[0], protocol.encode(from_columns(row))) for row in rows.order_by("seq").values_list(*COLUMNS)[:limit]]

    def estimated_rows(self, model: type[Model]) -> int | None:
        return None


BACKEND = PortableBackend()
