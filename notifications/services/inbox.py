"""Inbox state: read, unread, seen, archive, unarchive, delete and snooze, each one transaction under the user's stream lock.

A change that changes something is an event in the user's stream as well (models.InboxEvent):
it takes the next seq, as a notification does, and is pushed after commit like one, so every
device applies it in seq order and one that was away catches up on it with its cursor
(docs/protocol.md, "Inbox state"). Ops set absolute state, never toggle: replayed, they converge.

With the client's event id a change is applied once per (user, id): the ClientEvent row is
written in the same transaction, after the lock, and a repeat changes nothing and gets the
stored answer (a repeat never undoes a later change).

The unread and unseen counters move by what each changed row was and became, so they stay
exact: unread counts unread notifications in the inbox (neither archived nor snoozed),
unseen those in the inbox above the stream's seen_seq.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .. import changes, protocol, push
from ..changes import Change, Filter
from ..models import InboxEvent, Notification, Topic, UserStream, WebhookEvent
from . import client_events, snooze, webhooks
from .streams import locked_stream

CHUNK = 1000  # rows per statement of a filter op: many statements in the one transaction, never one unbounded one


@dataclass(frozen=True)
class Outcome:
    """What a change did, and the counts after it (they cover every seq up to head_seq)."""

    op: str
    seq: int | None  # the change's event; None when it changed nothing
    changed: int  # notifications changed
    changed_ids: list[int]  # by ids: those that changed (by filter: not listed)
    up_to_seq: int | None  # by filter and `seen`: the bound it was resolved to
    unread: int
    unseen: int
    head_seq: int
    repeated: bool = False

    def answer(self) -> dict[str, Any]:
        """The fields of the `reply` to a frame, and of the HTTP answer."""
        fields: dict[str, Any] = {"op": self.op, "seq": self.seq, "changed": self.changed}
        if self.up_to_seq is not None:
            fields["up_to_seq"] = self.up_to_seq
        fields.update(unread=self.unread, unseen=self.unseen, head_seq=self.head_seq)
        if self.repeated:
            fields["repeated"] = True
        return fields


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    seq: int
    read: bool
    archived: bool
    snoozed: bool

    def unread(self) -> bool:
        return not (self.read or self.archived or self.snoozed)

    def unseen(self, seen_seq: int) -> bool:
        return not (self.archived or self.snoozed) and self.seq > seen_seq


@dataclass
class Counts:
    """The stream's counters as the transaction moves them (written once, with the event)."""

    head_seq: int
    unread: int
    unseen: int
    seen_seq: int

    def move(self, before: Row, after: Row | None) -> None:
        self.unread += (after is not None and after.unread()) - before.unread()
        self.unseen += (after is not None and after.unseen(self.seen_seq)) - before.unseen(self.seen_seq)


@dataclass(frozen=True)
class _Target:
    """What an op makes of a row: which rows it changes, the UPDATE's values (None: delete), the row after."""

    source: Q
    values: dict[str, Any] | None
    after: Callable[[Row], Row] = field(default=lambda row: row)


def apply(*, user_id: int, change: Change, client_id: str | None = None) -> Outcome:
    """Apply a change to the user's notifications (ids not theirs are ignored, as ids that do not exist)."""
    with transaction.atomic():
        stream = locked_stream(user_id)
        stored = client_events.first_reply(user_id, client_id) if client_id is not None else None
        if stored is not None:
            # Applied before: change nothing; the counts are today's, so a client is not set back by them.
            return Outcome(**stored, unread=stream.unread, unseen=stream.unseen, head_seq=stream.head_seq, repeated=True)
        outcome = _apply(stream, change)
        if client_id is not None:
            reply = {k: getattr(outcome, k) for k in ("op", "seq", "changed", "changed_ids", "up_to_seq")}
            client_events.record(user_id, client_id, op=change.op, reply=reply)
    return outcome


def _apply(stream: UserStream, change: Change) -> Outcome:
    counts = Counts(stream.head_seq, stream.unread, stream.unseen, stream.seen_seq)
    if change.op == changes.SEEN:
        assert change.up_to_seq is not None
        return _seen(stream, counts, change.up_to_seq)
    target = _target(change, timezone.now())
    fields: dict[str, Any]
    if change.filter is not None:
        up_to_seq = stream.head_seq if change.filter.up_to_seq is None else min(change.filter.up_to_seq, stream.head_seq)
        changed = _change_by_filter(_in_filter(stream.user_id, change.op, change.filter, up_to_seq), target, counts)
        changed_ids: list[int] = []
        fields = {"filter": change.filter.event_fields(), "up_to_seq": up_to_seq}
    else:
        rows = rows_of(Notification.objects.filter(recipient_id=stream.user_id, id__in=change.ids).filter(target.source).order_by("seq"))
        _change_rows(rows, target, counts)
        changed, changed_ids, up_to_seq = len(rows), [r.id for r in rows], None
        fields = {"ids": changed_ids}
        if change.until is not None:
            fields["until"] = change.until.isoformat()
            snooze.wake_at(stream.user_id, change.until)
    seq = record_event(stream, counts, change.op, fields) if changed else None
    if change.op == changes.READ and changed:
        emit_read(stream.user_id, ids=changed_ids, up_to_seq=up_to_seq)
    return Outcome(change.op, seq, changed, changed_ids, up_to_seq, counts.unread, counts.unseen, counts.head_seq)


def _target(change: Change, now: datetime) -> _Target:
    op = change.op
    if op == changes.READ:
        return _Target(Q(read_at__isnull=True), {"read_at": now}, lambda r: replace(r, read=True))
    if op == changes.UNREAD:
        return _Target(Q(read_at__isnull=False), {"read_at": None}, lambda r: replace(r, read=False))
    if op == changes.ARCHIVE:
        # Archiving a snoozed notification puts it away for good: its snooze ends with it.
        return _Target(
            Q(archived_at__isnull=True), {"archived_at": now, "snoozed_until": None}, lambda r: replace(r, archived=True, snoozed=False)
        )
    if op == changes.UNARCHIVE:
        return _Target(Q(archived_at__isnull=False), {"archived_at": None}, lambda r: replace(r, archived=False))
    if op == changes.SNOOZE:
        # Snoozing an archived one takes it out of the archive: it comes back to the inbox at `until`.
        again = Q(snoozed_until__isnull=True) | ~Q(snoozed_until=change.until)
        return _Target(again, {"snoozed_until": change.until, "archived_at": None}, lambda r: replace(r, snoozed=True, archived=False))
    assert op == changes.DELETE, op
    return _Target(Q(), None)


def _in_filter(user_id: int, op: str, f: Filter, up_to_seq: int) -> QuerySet[Notification]:
    qs = Notification.objects.filter(recipient_id=user_id, seq__lte=up_to_seq)
    if op == changes.UNARCHIVE or f.archived:
        qs = qs.filter(archived_at__isnull=False)
    else:
        qs = qs.filter(archived_at__isnull=True, snoozed_until__isnull=True)
    if f.topic is not None:
        qs = qs.filter(topic_id=Topic.objects.filter(slug=f.topic).values("id")[:1])
    if f.kind is not None:
        qs = qs.filter(Q(kind=f.kind) | Q(kind__startswith=f.kind + "."))
    return qs


def rows_of(qs: QuerySet[Notification]) -> list[Row]:
    return [
        Row(id_, seq, read_at is not None, archived_at is not None, snoozed_until is not None)
        for id_, seq, read_at, archived_at, snoozed_until in qs.values_list("id", "seq", "read_at", "archived_at", "snoozed_until")
    ]


def _change_by_filter(qs: QuerySet[Notification], target: _Target, counts: Counts) -> int:
    """In seq order, CHUNK rows at a time: each chunk one read and one write, all in the caller's transaction."""
    changed, after_seq = 0, 0
    while True:
        rows = rows_of(qs.filter(target.source, seq__gt=after_seq).order_by("seq")[:CHUNK])
        _change_rows(rows, target, counts)
        changed += len(rows)
        if len(rows) < CHUNK:
            return changed
        after_seq = rows[-1].seq


def _change_rows(rows: list[Row], target: _Target, counts: Counts) -> None:
    if not rows:
        return
    chosen = Notification.objects.filter(id__in=[r.id for r in rows])
    if target.values is None:
        chosen.delete()  # their away deliveries go with them (CASCADE)
    else:
        chosen.update(**target.values)
    for row in rows:
        counts.move(row, None if target.values is None else target.after(row))


def _seen(stream: UserStream, counts: Counts, up_to_seq: int) -> Outcome:
    seen_seq = min(max(up_to_seq, stream.seen_seq), stream.head_seq)
    if seen_seq == stream.seen_seq:
        return Outcome(changes.SEEN, None, 0, [], seen_seq, counts.unread, counts.unseen, counts.head_seq)
    now_seen = Notification.objects.filter(
        recipient_id=stream.user_id, seq__gt=stream.seen_seq, seq__lte=seen_seq, archived_at__isnull=True, snoozed_until__isnull=True
    ).count()
    counts.unseen -= now_seen
    counts.seen_seq = seen_seq
    seq = record_event(stream, counts, changes.SEEN, {"up_to_seq": seen_seq})
    return Outcome(changes.SEEN, seq, now_seen, [], seen_seq, counts.unread, counts.unseen, counts.head_seq)


def emit_read(user_id: int, *, ids: list[int], up_to_seq: int | None) -> None:
    """`notification.read` to the endpoints that take it, in the mark's transaction: refs by id, else the bound."""
    endpoints = webhooks.subscribers(WebhookEvent.READ)
    if not endpoints:
        return
    if up_to_seq is not None:
        data: dict[str, Any] = {"up_to_seq": up_to_seq}
    else:
        data = {"notifications": webhooks.refs(Notification.objects.filter(id__in=ids).order_by("seq").values(*webhooks.REF_FIELDS))}
    webhooks.emit_many(WebhookEvent.READ, [(user_id, data)], endpoints=endpoints)


def record_event(stream: UserStream, counts: Counts, op: str, fields: dict[str, Any]) -> int:
    """The change's event at the next seq, the stream's counters, and its push after commit."""
    counts.head_seq += 1
    seq = counts.head_seq
    body = {**fields, "unread": counts.unread, "unseen": counts.unseen, "head_seq": seq}
    UserStream.objects.filter(pk=stream.pk).update(head_seq=seq, unread=counts.unread, unseen=counts.unseen, seen_seq=counts.seen_seq)
    InboxEvent.objects.create(user_id=stream.user_id, seq=seq, op=op, body=body, created_at=timezone.now())
    text = protocol.encode(protocol.state_event(seq=seq, op=op, fields=body))
    user_id = stream.user_id
    transaction.on_commit(lambda: push.stream_events(user_id, [(seq, text)]))
    return seq
