"""Away channels: find the notifications due on a channel, claim them, send, record — in one transaction.

Due (docs/channels.md): no device acked it (above the delivered cursor), unread,
in the inbox (not archived, not snoozed), unexpired, the channel's delay for its category passed, the recipient's
preferences allow it (a critical one from a token with the `critical` scope
overrides them) and no quiet hours hold it.

Each user's work on a channel is claimed by locking their ChannelCursor row
(SKIP LOCKED: several workers share users, never one user). The send happens
while that transaction is open and the AwayDelivery rows are written in it, so
a worker killed mid-send leaves no record and no cursor move: the next one
sends again, and what a push or mail server had not accepted yet is sent once.
The publish path does nothing for any of this; the worker finds due work by query.
What was sent is a notification.emailed or .pushed webhook event, written in the
same transaction as its AwayDelivery rows.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from itertools import repeat

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from .. import delivery, selectors
from ..models import AwayDelivery, ChannelCursor, Notification, UserStream
from . import webhooks
from .preferences import Policy, category_label, min_delay, policy

log = logging.getLogger(__name__)

# What an Item copies from its notification by name; the rest is worked out here.
ITEM_COLUMNS = tuple(f.name for f in fields(delivery.Item) if f.name not in {"topic", "category", "category_label"})
ROWS_PER_USER = 200  # notifications looked at per user per round; the rest come next round
MAX_BACKOFF = timedelta(hours=1)


@dataclass
class Report:
    users: int = 0
    sent: int = 0
    failures: int = 0
    more: bool = False
    errors: list[str] = field(default_factory=list)

    def add(self, other: Report) -> None:
        """Another part of the same round (one user's)."""
        self.users += other.users
        self.sent += other.sent
        self.failures += other.failures
        self.errors += other.errors


def deliver_due(*, channel: str, users: int = 100, now: datetime | None = None) -> Report:
    """One round on a channel: up to `users` users with due work each get their due notifications sent,
    several at once (the channel's concurrency), so a slow device of one user holds up no other user."""
    backend = delivery.BACKENDS[channel]
    config = delivery.get_settings()
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=min_delay(channel=channel, channel_delay=backend.delay_seconds(config)))
    streams = backend.reachable(UserStream.objects.all())
    user_ids = selectors.away_candidates(channel=channel, streams=streams, cutoff=cutoff, now=now, limit=users)
    report = Report(more=len(user_ids) == users)
    # SQLite takes its write lock at BEGIN (settings.py): users' transactions would only queue for it.
    workers = 1 if connection.vendor == "sqlite" else min(backend.concurrency(config), len(user_ids))
    if workers <= 1:
        parts = [_deliver_user_due(backend, config, user_id, now) for user_id in user_ids]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"away-{channel}") as pool:
            parts = list(pool.map(_in_thread, repeat(backend), repeat(config), user_ids, repeat(now)))
    for part in parts:
        report.add(part)
    return report


def _in_thread(backend: delivery.Backend, config: delivery.AwaySettings, user_id: int, now: datetime) -> Report:
    try:
        return _deliver_user_due(backend, config, user_id, now)
    finally:
        connection.close()  # this thread's own: back to the pool


def _deliver_user_due(backend: delivery.Backend, config: delivery.AwaySettings, user_id: int, now: datetime) -> Report:
    """All of a user's due work on the channel. A failure of theirs is logged and backs them off; it never
    ends the round for the other users."""
    report = Report()
    try:
        ChannelCursor.objects.get_or_create(user_id=user_id, channel=backend.name)
        while _deliver_user(backend, config, user_id, now, report):
            pass
    except Exception as exc:
        log.exception("%s for user %s failed", backend.name, user_id)
        report.failures += 1
        report.errors.append(repr(exc))
        cursor = ChannelCursor.objects.filter(user_id=user_id, channel=backend.name).first()
        if cursor is not None:
            cursor.failures += 1
            cursor.hold_until = now + _backoff(cursor.failures)
            cursor.save(update_fields=["failures", "hold_until"])
    return report


def _deliver_user(backend: delivery.Backend, config: delivery.AwaySettings, user_id: int, now: datetime, report: Report) -> bool:
    """One claim-send-record transaction for a user. True if more of theirs is due now (a non-digest channel)."""
    with transaction.atomic():
        cursor = ChannelCursor.objects.select_for_update(skip_locked=True).filter(user_id=user_id, channel=backend.name).first()
        if cursor is None or (cursor.hold_until and cursor.hold_until > now):
            return False  # another worker has this user, or it waits
        report.users += 1
        head, delivered = UserStream.objects.filter(user_id=user_id).values_list("head_seq", "delivered_seq").get()
        recorded = AwayDelivery.objects.filter(notification_id=OuterRef("pk"), channel=backend.name)
        rows = list(
            Notification.objects.filter(recipient_id=user_id, seq__gt=max(cursor.seq, delivered), seq__lte=head)
            .exclude(Exists(recorded))
            .select_related("topic")
            .order_by("seq")[:ROWS_PER_USER]
        )
        rules = policy(user_id=user_id, channel=backend.name, channel_delay=backend.delay_seconds(config))
        due, waits = _triage(rows, rules, cursor, backend, config, now)
        # One message per transaction on a non-digest channel: a worker killed mid-send can
        # repeat only the one in flight, never ones the push service took earlier in the batch.
        later = [] if backend.digest else due[1:]
        due = due[: len(due) - len(later)]
        outcome = delivery.Outcome()
        if due:
            user = get_user_model().objects.get(pk=user_id)
            recipient = delivery.Recipient(user_id, user.get_username(), getattr(user, "email", "") or "")
            outcome = backend.send(recipient=recipient, items=due, config=config)
        _record(backend.name, outcome, now)
        if outcome.sent:
            sent = set(outcome.sent)
            refs = [webhooks.notification_ref(n) for n in rows if n.id in sent]
            webhooks.emit(webhooks.SENT_AWAY[backend.name], {"notifications": refs}, user_id=user_id)
        report.sent += len(outcome.sent)
        pending = {i.seq for i in due if i.id not in outcome.sent and i.id not in outcome.dropped} | {i.seq for i in later} | set(waits)
        last = rows[-1].seq if len(rows) == ROWS_PER_USER else head
        cursor.seq = max(cursor.seq, min(pending) - 1 if pending else last)
        if outcome.retry:
            cursor.failures += 1
            report.failures += 1
            report.errors.append(outcome.error)
            cursor.hold_until = now + _backoff(cursor.failures)
        else:
            cursor.failures = 0
            cursor.hold_until = min(waits.values()) if waits else None
        if outcome.sent:
            cursor.last_sent_at = now
        cursor.save(update_fields=["seq", "failures", "hold_until", "last_sent_at"])
    return bool(later) and not outcome.retry


def _backoff(failures: int) -> timedelta:
    return min(MAX_BACKOFF, timedelta(seconds=2 ** min(failures, 20)))


def _triage(
    rows: list[Notification], rules: Policy, cursor: ChannelCursor, backend: delivery.Backend, config: delivery.AwaySettings, now: datetime
) -> tuple[list[delivery.Item], dict[int, datetime]]:
    """The due items, and {seq: when} for those not due yet. Read, archived, snoozed, expired and unwanted ones are neither."""
    due: list[delivery.Item] = []
    waits: dict[int, datetime] = {}
    quiet_until = rules.quiet.until(now) if rules.quiet else None
    for n in rows:
        if n.read_at is not None or n.archived_at is not None or n.snoozed_until is not None:
            continue  # a snoozed one is due again once woken: at a new seq, above this cursor
        if n.expires_at is not None and n.expires_at <= now:
            continue
        topic = n.topic.slug if n.topic else None
        critical = _critical(n)
        verdict = rules.verdict(kind=n.kind, topic=topic)
        if not (verdict.enabled or critical):
            continue
        ready_at = n.created_at + timedelta(seconds=verdict.delay_seconds)
        if quiet_until and not critical:
            ready_at = max(ready_at, quiet_until)
        if ready_at > now:
            waits[n.seq] = ready_at
            continue
        category = delivery.natural_category(n.kind, topic)
        label = category_label(category, topic_titles={n.topic.slug: n.topic.title} if n.topic else {})
        columns = {name: getattr(n, name) for name in ITEM_COLUMNS}
        due.append(delivery.Item(**columns, topic=topic, category=category, category_label=label))
    if backend.digest and due and cursor.last_sent_at:
        # One digest per window: what is due now waits for the window's end, and goes in one message.
        window_end = cursor.last_sent_at + timedelta(seconds=config.email_digest_seconds)
        if window_end > now:
            waits.update({i.seq: window_end for i in due})
            due = []
    return due, waits


def _critical(n: Notification) -> bool:
    """Marked critical by its publisher; the API lets only a token with the `critical` scope mark one."""
    return n.level == "error" and isinstance(n.data, dict) and n.data.get("critical") is True


def _record(channel: str, outcome: delivery.Outcome, now: datetime) -> None:
    rows = [AwayDelivery(notification_id=i, channel=channel, state=AwayDelivery.State.SENT, at=now) for i in outcome.sent]
    rows += [AwayDelivery(notification_id=i, channel=channel, state=AwayDelivery.State.SKIPPED, at=now) for i in outcome.dropped]
    AwayDelivery.objects.bulk_create(rows)
