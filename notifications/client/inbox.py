"""What the listener holds: its notifications with every `state` event applied, and the unread and unseen counts.

The rules (which view a notification is in, which ones a filter takes, what an op makes of
one) are client.js's too (inbox-state.js); tests/state_cases.json holds both to the same cases.
Ops set absolute state, never toggle: applied in seq order, they converge on the server's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .values import Notification

INBOX, ARCHIVED, SNOOZED = "inbox", "archived", "snoozed"


@dataclass(frozen=True)
class Item:
    """A notification as held: the frame's, where it is (`archived`, `snoozed_until`), and the answer that stands."""

    notification: Notification
    archived: bool = False
    snoozed_until: str | None = None
    answer: str | None = None  # the id of the action answered (on any device), from the `action` event

    @property
    def id(self) -> int:
        return self.notification.id

    @property
    def seq(self) -> int:
        return self.notification.seq

    @property
    def view(self) -> str:
        return ARCHIVED if self.archived else SNOOZED if self.snoozed_until else INBOX


def taken_by_filter(item: Item, event: dict[str, Any]) -> bool:
    """Whether a filter op's event takes this item: in the op's view, at or below up_to_seq, of its topic and kind prefix."""
    f = event.get("filter") or {}
    view = ARCHIVED if event["op"] == "unarchive" or f.get("archived") else INBOX
    if item.view != view or item.seq > event["up_to_seq"]:
        return False
    if f.get("topic") is not None and item.notification.topic != f["topic"]:
        return False
    kind, prefix = item.notification.kind, f.get("kind")
    return prefix is None or kind == prefix or kind.startswith(prefix + ".")  # "build" takes "build.failed", not "builder"


def after_op(item: Item, event: dict[str, Any]) -> Item | None:
    """The item after an op (None: deleted)."""
    op = event["op"]
    n = item.notification
    if op == "read":
        return replace(item, notification=replace(n, read=True))
    if op == "unread":
        return replace(item, notification=replace(n, read=False))
    if op == "archive":
        return replace(item, archived=True, snoozed_until=None)  # archiving ends a snooze
    if op == "unarchive":
        return replace(item, archived=False)
    if op == "snooze":
        return replace(item, snoozed_until=str(event["until"]), archived=False)
    if op == "delete":
        return None
    if op == "action":  # the first answer stands: the server sends one `action` event per notification
        return replace(item, notification=replace(n, read=True), answer=str(event["action"]))
    return item  # an op of a later protocol


@dataclass
class Change:
    """What one `state` event (or a woken snooze) did to what is held."""

    op: str
    seq: int
    changed: list[Item] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)  # ids the event names that are not held


class Inbox:
    """The notifications a listener has been given, by id, with every `state` event applied in seq order."""

    def __init__(self, *, limit: int = 1000) -> None:
        self.items: dict[int, Item] = {}
        self.seen_seq = 0
        self._limit = limit

    def view(self, name: str = INBOX) -> list[Item]:
        """Newest first."""
        return sorted((i for i in self.items.values() if i.view == name), key=lambda i: -i.seq)

    def take(self, n: Notification) -> Item | None:
        """A notification in seq order; returns the item it replaces (held at an older seq: a snooze that woke)."""
        held = self.items.get(n.id)
        if held is not None and held.seq >= n.seq:
            return None
        # A woken snooze is new again, but its answer stands: the frame does not carry it.
        self.items[n.id] = Item(n, answer=held.answer if held is not None else None)
        if len(self.items) > self._limit:
            for old in sorted(self.items.values(), key=lambda i: i.seq)[: len(self.items) - self._limit]:
                del self.items[old.id]
        return held

    def apply(self, event: dict[str, Any]) -> Change:
        change = Change(event["op"], int(event["seq"]))
        if event["op"] == "seen":
            self.seen_seq = max(self.seen_seq, int(event["up_to_seq"]))
            return change
        named = event["ids"] if "ids" in event else [event["notification"]] if "notification" in event else None
        if named is not None:
            taken = [self.items[i] for i in named if i in self.items]
            change.unknown = [i for i in named if i not in self.items]
        else:
            taken = [i for i in self.items.values() if taken_by_filter(i, event)]
        for item in taken:
            after = after_op(item, event)
            if after is None:
                del self.items[item.id]
                change.removed.append(item.id)
            else:
                self.items[item.id] = after
                change.changed.append(after)
        return change


class Count:
    """unread or unseen as the server counts them, exact between its counts.

    Each count the server sends covers the seqs up to the head_seq sent with it; the
    notifications taken above it are added (docs/protocol.md, "Unread counts").
    """

    def __init__(self, field: str) -> None:
        self.field = field
        self.value = 0
        self._counted_head = 0
        self._base = 0
        self._recent: list[int] = []

    def restart(self, head_seq: int, value: int) -> None:
        self.value, self._base, self._counted_head, self._recent = value, head_seq, head_seq, []

    def counted(self, frame: dict[str, Any]) -> None:
        value, head = frame.get(self.field), frame.get("head_seq")
        if not isinstance(value, int):
            return
        if not isinstance(head, int):
            self.value = value
            return
        if head < self._counted_head:
            return  # older than a count already taken (a reply that came before the events it covers)
        self._counted_head = head
        self._recent = [s for s in self._recent if s > head]
        self._base = max(self._base, head)
        self.value = value + len(self._recent)

    def taken(self, n: Notification) -> None:
        if n.seq <= self._base:
            return
        self._base = n.seq
        if self.field == "unseen" or not n.read:
            self._recent.append(n.seq)
            self.value += 1

    def covered_up_to(self, seq: int) -> None:
        self._base = max(self._base, seq)
