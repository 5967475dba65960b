"""The client's values: what the server sends and answers, as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Copies of the server's close codes (notifications/protocol.py; tests/test_frames.py checks them).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_RATE_LIMITED = 4429
FATAL_CLOSE_CODES = {CLOSE_UNAUTHENTICATED, CLOSE_FORBIDDEN}


@dataclass(frozen=True)
class Notification:
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Notification:
        return cls(
            seq=int(d["seq"]), id=int(d["id"]), title=str(d["title"]), topic=d.get("topic"), kind=d.get("kind", "message"),
            body=d.get("body", ""), data=d.get("data") or {}, url=d.get("url", ""), level=d.get("level", "info"),
            created_at=str(d.get("created_at", "")), read=bool(d.get("read", False)),
        )  # fmt: skip


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
