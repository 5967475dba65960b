"""Changes of inbox state as values: what a client asks in a frame or over HTTP (docs/protocol.md, "Inbox state").

Validated once at the edge (protocol.parse, change_schemas.py) into a Change; services/inbox.py applies it.
The rules here (ops, the client's event id, a filter's kind prefix, how far a snooze may go) are the
one home of each; the clients apply the `state` events these become by the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .rules import MAX_READ_IDS

READ, UNREAD, SEEN, ARCHIVE, UNARCHIVE, DELETE, SNOOZE = "read", "unread", "seen", "archive", "unarchive", "delete", "snooze"
OPS = (READ, UNREAD, SEEN, ARCHIVE, UNARCHIVE, DELETE, SNOOZE)
ACTION = "action"  # an answer to a notification's action: its own frame (protocol.Answer) and service (services/actions.py)
BY_FILTER = (READ, ARCHIVE, UNARCHIVE, DELETE)
MAX_IDS = MAX_READ_IDS
MAX_SNOOZE = timedelta(days=365)

# A client's own id for a state-changing frame or request (a UUID fits).
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")
KIND_PREFIX_PATTERN = r"^[-a-zA-Z0-9_.:]{1,64}$"  # a kind, or the dotted start of one
_KIND_PREFIX = re.compile(r"[-a-zA-Z0-9_.:]{1,64}\Z")


def is_client_id(value: object) -> bool:
    return isinstance(value, str) and _CLIENT_ID.match(value) is not None


def is_kind_prefix(value: object) -> bool:
    return isinstance(value, str) and _KIND_PREFIX.match(value) is not None


@dataclass(frozen=True)
class Filter:
    """Which notifications a filter op takes: those of one view, up to a seq, of a topic, of a kind prefix.

    The view is the inbox (neither archived nor snoozed), or with `archived` the archive;
    `unarchive` always takes from the archive. `kind` "build" takes "build" and "build.failed".
    Without `up_to_seq`, the server takes its head at that moment, and says which in the event.
    """

    topic: str | None = None
    kind: str | None = None
    up_to_seq: int | None = None
    archived: bool = False

    def event_fields(self) -> dict[str, Any]:
        """As the `state` event carries it: what was given besides up_to_seq (which the event resolves)."""
        fields: dict[str, Any] = {}
        if self.topic is not None:
            fields["topic"] = self.topic
        if self.kind is not None:
            fields["kind"] = self.kind
        if self.archived:
            fields["archived"] = True
        return fields


@dataclass(frozen=True)
class Change:
    """One op: by `ids` (at most MAX_IDS), by `filter`, `seen` up to a seq, or `snooze` ids until a time."""

    op: str
    ids: tuple[int, ...] = ()
    filter: Filter | None = None
    up_to_seq: int | None = None  # seen
    until: datetime | None = None  # snooze


def snooze_until_problem(until: datetime, now: datetime) -> str | None:
    """Why `until` cannot end a snooze, or None: it needs an offset, in the future, at most MAX_SNOOZE ahead."""
    if until.tzinfo is None or until.utcoffset() is None:
        return "'until' needs a UTC offset"
    if until <= now:
        return "'until' must be in the future"
    if until > now + MAX_SNOOZE:
        return f"'until' must be at most {MAX_SNOOZE.days} days ahead"
    return None
