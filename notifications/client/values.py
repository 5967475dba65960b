"""The client's values: what the server sends and answers, as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# Copies of the server's close codes (notifications/protocol.py; tests/test_frames.py checks them).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_RATE_LIMITED = 4429
FATAL_CLOSE_CODES = {CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN}


@dataclass(frozen=True)
class Action:
    """A button on a notification: with a url, a link; without, the user answers with its id."""

    id: str
    label: str
    style: str = "secondary"
    url: str = ""


@dataclass(frozen=True)
class Notification:
    """A `notification` frame (docs/protocol.md): a copy of the server's field list, which tests/test_frames.py checks."""

    seq: int
    id: int
    title: str
    topic: str | None = None
    kind: str = "message"
    body: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    level: str = "info"
    created_at: str = ""
    read: bool = False
    actions: tuple[Action, ...] = ()
    group_key: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Notification:
        """From a frame or an API item: every field it has, by name (a newer server's extra fields are ignored)."""
        known = {k: v for k, v in d.items() if k in _NOTIFICATION_FIELDS and v is not None}
        known["seq"], known["id"], known["read"] = int(d["seq"]), int(d["id"]), bool(d.get("read", False))
        known["actions"] = tuple(Action(**{k: v for k, v in a.items() if k in _ACTION_FIELDS}) for a in d.get("actions") or ())
        return cls(**known)


_NOTIFICATION_FIELDS = {f.name for f in fields(Notification)}
_ACTION_FIELDS = {f.name for f in fields(Action)}


@dataclass(frozen=True)
class Delivery:
    recipient: int
    id: int
    seq: int


@dataclass(frozen=True)
class PublishResult:
    created: bool
    notifications: list[Delivery]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PublishResult:
        return cls(bool(d["created"]), [Delivery(int(n["recipient"]), int(n["id"]), int(n["seq"])) for n in d["notifications"]])


@dataclass(frozen=True)
class InboxPage:
    items: list[Notification]
    head_seq: int
    unread: int
    next_before: int | None
    next_since: int | None


class ApiError(Exception):
    """An error answer of the HTTP API: {code, message, fields}."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


class ListenerClosed(Exception):
    """The server refused the socket for good (4401 not authenticated, 4403 forbidden)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"closed by server with {code} {reason}".strip())
        self.code = code
