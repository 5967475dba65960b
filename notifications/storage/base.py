"""The storage seam's values and interface (storage/__init__.py says why it exists)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, TypeVar

from django.db.models import Model, QuerySet

from ..fields import CONTENT_COLUMNS, Content
from ..users import UserId

M = TypeVar("M", bound=Model)


class NewRow:
    """A notification being inserted: its recipient's columns, and its Content's (every Content field is a column).

    Not a model instance: a publish builds up to 1,000 of them, and a model's
    __init__ and signals would be most of its Python time. It has every column a
    frame reads (frames.StoredNotification).
    """

    __slots__ = ("recipient_id", "seq", "created_at", "idempotency_key", "read_at", "archived_at", "snoozed_until", "id", *CONTENT_COLUMNS)

    recipient_id: int
    seq: int  # while planned: its place among this publish's rows for the recipient (1, 2, ...)
    created_at: datetime
    idempotency_key: str | None
    read_at: datetime | None
    archived_at: datetime | None
    snoozed_until: datetime | None
    id: int
    topic_id: int | None  # a Content column, named for the push (push.Recipient)

    def __init__(self, *, recipient_id: int, seq: int, content: Content, created_at: datetime, idempotency_key: str | None) -> None:
        self.recipient_id = recipient_id
        self.seq = seq
        self.created_at = created_at
        self.idempotency_key = idempotency_key
        self.read_at = self.archived_at = self.snoozed_until = None  # a new row is unread, in the inbox
        self.id = 0
        _copy_content(self, content)


def _content_copier() -> Any:
    """`row.title = content.title` and so on for every Content column, written out as dataclasses write an
    __init__: a loop of setattr made a row cost twice as much to build, and a publish builds up to 1,000."""
    lines = "".join(f"    row.{name} = content.{name}\n" for name in CONTENT_COLUMNS)
    namespace: dict[str, Any] = {}
    exec(f"def copy_content(row, content):\n{lines}", namespace)  # our own field names, nothing else
    return namespace["copy_content"]


_copy_content = _content_copier()


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
