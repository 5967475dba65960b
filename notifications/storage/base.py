"""The storage seam's values and interface (storage/__init__.py says why it exists)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from django.db.models import Model, QuerySet

from ..users import UserId

M = TypeVar("M", bound=Model)


@dataclass(slots=True)
class NewRow:
    """A notification being inserted, with Notification's column attributes (frames.StoredNotification).

    Not a model instance: a publish builds up to 1,000 of them, and a model's
    __init__ and signals would be most of its Python time.
    """

    recipient_id: int
    seq: int  # while planned: its place among this publish's rows for the recipient (1, 2, ...)
    topic_id: int | None
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    url: str
    level: str
    actor_id: int | None
    created_at: datetime
    expires_at: datetime | None
    idempotency_key: str | None
    read_at: datetime | None = None
    archived_at: datetime | None = None
    snoozed_until: datetime | None = None
    id: int = 0


class MissingStreams(Exception):
    """Some recipients have no UserStream yet: nothing was written; create them and try again."""

    def __init__(self, user_ids: list[int]) -> None:
        super().__init__(f"no stream for users {user_ids[:10]}")
        self.user_ids = user_ids


class Backend(Protocol):
    def insert(self, rows: list[NewRow]) -> None:
        """Lock the recipients' streams (in user id order), advance them, insert the rows.

        On return each row has its final seq, id and created_at (taken under the
        lock, so it follows seq order). Raises MissingStreams, having written nothing.
        """

    def user_in(self, queryset: QuerySet[M], user_ids: list[UserId]) -> QuerySet[M]:
        """queryset.filter(user_id__in=user_ids)."""

    def move_delivered(self, moved: dict[UserId, int], now: datetime) -> None:
        """Set delivered cursors {user_id: seq}, under locks the caller holds."""

    def replay_frames(self, user_id: UserId, *, since: int, head_seq: int, limit: int, now: datetime) -> list[tuple[int, str]]:
        """(seq, encoded `notification` frame) for unexpired seqs in (since, head_seq], oldest first."""

    def estimated_rows(self, model: type[Model]) -> int | None:
        """The planner's row estimate for a table, or None where there is none."""
