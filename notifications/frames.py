"""The `notification` frame, built from its one definition (fields.FRAME_FIELDS) and a stored row.

Every builder starts here: live pushes and the portable replay (notification_frame, from_columns),
PostgreSQL's replay (storage.postgres, field by field from FRAME_FIELDS), the dashboard and the
HTTP API. tests/test_frames.py holds them, and every copy of the field list, to it.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Protocol

from .fields import FRAME_FIELDS

FIELD_NAMES = tuple(f.name for f in FRAME_FIELDS)
COLUMNS = tuple(f.column for f in FRAME_FIELDS)

# A row's values in frame order, but for the topic's slug, which the caller knows (a row has only topic_id).
_TOPIC_AT = FIELD_NAMES.index("topic")
_ROW_VALUES = attrgetter(*(f.column for f in FRAME_FIELDS if f.name != "topic"))


class StoredNotification(Protocol):
    """A Notification, or a row being inserted (storage.NewRow): it has every column FRAME_FIELDS reads."""

    seq: int
    id: int


def notification_frame(n: StoredNotification, topic_slug: str | None) -> dict[str, Any]:
    values = _ROW_VALUES(n)
    return from_columns((*values[:_TOPIC_AT], topic_slug, *values[_TOPIC_AT:]))


def from_columns(values: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    """A frame from one row of `values_list(*COLUMNS)`."""
    frame: dict[str, Any] = {"type": "notification", **dict(zip(FIELD_NAMES, values, strict=True))}
    frame["read"] = frame["read"] is not None
    return frame
