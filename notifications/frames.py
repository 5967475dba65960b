"""The `notification` frame, defined once: its fields, and how each is read from a stored row.

Every builder starts here: live pushes and the portable replay (notification_frame),
PostgreSQL's replay (storage.postgres, field by field from NOTIFICATION_FIELDS), the
HTTP API's schema and the Python client. tests/test_frames.py holds them all to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Protocol


class Field(NamedTuple):
    name: str  # the frame's key
    column: str  # the Notification lookup it is read from (Django ORM path)


# In frame order. `topic` is the topic's slug; `read` is whether read_at is set.
NOTIFICATION_FIELDS: tuple[Field, ...] = (
    Field("seq", "seq"),
    Field("id", "id"),
    Field("topic", "topic__slug"),
    Field("kind", "kind"),
    Field("title", "title"),
    Field("body", "body"),
    Field("data", "data"),
    Field("url", "url"),
    Field("level", "level"),
    Field("created_at", "created_at"),
    Field("read", "read_at"),
)
FIELD_NAMES = tuple(f.name for f in NOTIFICATION_FIELDS)
COLUMNS = tuple(f.column for f in NOTIFICATION_FIELDS)


class StoredNotification(Protocol):
    """A Notification, or a row being inserted (services.publish.NewRow): the attributes a frame is built from."""

    seq: int
    id: int
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    url: str
    level: str
    created_at: datetime
    read_at: datetime | None


def notification_frame(n: StoredNotification, topic_slug: str | None) -> dict[str, Any]:
    return from_columns((n.seq, n.id, topic_slug, n.kind, n.title, n.body, n.data, n.url, n.level, n.created_at, n.read_at))


def from_columns(values: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    """A frame from one row of `values_list(*COLUMNS)`."""
    frame: dict[str, Any] = {"type": "notification", **dict(zip(FIELD_NAMES, values, strict=True))}
    frame["read"] = frame["read"] is not None
    return frame
