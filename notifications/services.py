"""Writes. Every change to notifications, sequences and unread counts goes through here.

Sequences: a user's seqs are allocated under a row lock on their UserStream,
in the transaction that inserts the rows, so commit order is seq order. Pushes
leave only from transaction.on_commit (events.py): a rolled-back write is never
announced, and a push is a signal, never the record.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from . import conf, events
from .errors import NotFound, ServiceError
from .models import Notification, Subscription, Topic, UserStream

INSERT_BATCH = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Content:
    """What a notification says; validated at the edge before it gets here."""

    title: str
    body: str = ""
    kind: str = "message"
    data: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    level: str = "info"
    expires_at: datetime | None = None
    topic_id: int | None = None
    actor_id: int | None = None


@dataclass(frozen=True)
class Delivery:
    recipient_id: int
    id: int
    seq: int


@dataclass(frozen=True)
class PublishResult:
    created: bool
    deliveries: list[Delivery]


@dataclass(slots=True)
class NewRow:
    """A notification being inserted, with Notification's column attributes.

    Not a model instance: building 1,000 of those (their __init__ and signals)
    cost about half of a 1,000-recipient publish's Python time.
    """

    recipient_id: int
    seq: int
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
    id: int = 0


@dataclass(frozen=True)
class PublishRequest:
    recipient_ids: Sequence[int]
    content: Content
    idempotency_key: str | None = None


@dataclass(frozen=True)
class ReadResult:
    changed_ids: list[int]
    up_to_seq: int | None
    unread: int
    head_seq: int  # the unread count covers every seq up to here


def notify(*, recipient_ids: Iterable[int], content: Content, idempotency_key: str | None = None) -> PublishResult:
    """Store one notification per recipient and push it after commit."""
    return publish_many([PublishRequest(list(recipient_ids), content, idempotency_key)])[0]


def publish_to_topic(*, topic: Topic, content: Content, idempotency_key: str | None = None) -> PublishResult:
    """Fan out to the topic's current, unmuted subscribers, in bulk statements."""
    subscribers = list(Subscription.objects.filter(topic=topic, muted=False).values_list("user_id", flat=True))
    topic_content = Content(**{**content.__dict__, "topic_id": topic.id})
    return publish_many([PublishRequest(subscribers, topic_content, idempotency_key)])[0]


def publish_to_everyone(*, content: Content, idempotency_key: str | None = None) -> PublishResult:
    """Every active user gets it: the operator's broadcast."""
    user_ids = list(get_user_model().objects.filter(is_active=True).order_by("id").values_list("id", flat=True))
    return publish_many([PublishRequest(user_ids, content, idempotency_key)])[0]


def publish_many(requests: Sequence[PublishRequest]) -> list[PublishResult]:
    """Publish several requests in one transaction: all are stored, or none."""
    retried_key = False
    while True:
        try:
            with transaction.atomic():
                return _publish_locked(requests)
        except _MissingStreams as missing:
            # A user's first notification: give them a stream (or fail, nothing written) and go again.
            _create_streams(missing.user_ids)
        except IntegrityError:
            # A concurrent retry with the same key won the race on the unique
            # (key, recipient) index; our transaction is gone, its result stands.
            if retried_key or not any(r.idempotency_key for r in requests):
                raise
            retried_key = True


class _MissingStreams(Exception):
    def __init__(self, user_ids: list[int]) -> None:
        self.user_ids = user_ids


def _publish_locked(requests: Sequence[PublishRequest]) -> list[PublishResult]:
    # Before any lock: a concurrent publish with one of these keys that commits
    # meanwhile makes our insert fail on the unique index, and publish_many retries.
    earlier = _earlier_results([r.idempotency_key for r in requests if r.idempotency_key])
    fresh = [r for r in requests if not (r.idempotency_key and r.idempotency_key in earlier)]
    rows = _plan(fresh)
    if rows:
        if transaction.get_connection().vendor == "postgresql":
            _store(rows)
        else:
            _store_portable(rows)
        transaction.on_commit(lambda: events.notifications_created(rows))

    by_request: dict[int, list[Delivery]] = defaultdict(list)
    for index, row in zip(_request_indexes(fresh), rows, strict=True):
        by_request[index].append(Delivery(row.recipient_id, row.id, row.seq))
    results = []
    fresh_index = 0
    for r in requests:
        if r.idempotency_key and r.idempotency_key in earlier:
            results.append(PublishResult(False, earlier[r.idempotency_key]))
        else:
            results.append(PublishResult(True, by_request[fresh_index]))
            fresh_index += 1
    return results


def _plan(requests: Sequence[PublishRequest]) -> list[NewRow]:
    """The rows to insert, each `seq` still its place among this publish's rows for that user (1, 2, ...)."""
    now = timezone.now()
    places: Counter[int] = Counter()
    rows = []
    for r in requests:
        c = r.content
        for uid in dict.fromkeys(r.recipient_ids):
            places[uid] += 1
            rows.append(
                NewRow(
                    recipient_id=uid, seq=places[uid], topic_id=c.topic_id, kind=c.kind, title=c.title, body=c.body,
                    data=c.data, url=c.url, level=c.level, actor_id=c.actor_id, created_at=now,
                    expires_at=c.expires_at, idempotency_key=r.idempotency_key,
                )
            )  # fmt: skip
    return rows


def _store(rows: list[NewRow]) -> None:
    """PostgreSQL: lock the streams, advance them and insert the rows in one statement.

    Everything but the statement is prepared before it, so the streams are
    locked for one round trip and the commit: batches to the same users queue
    on those locks, and Python work inside them (slowed further by other
    request threads holding the GIL) was most of what they waited for. Streams
    are locked in user id order (materialized first), the order every writer
    uses, so writers never deadlock. created_at is taken under the lock, so it
    follows seq order.
    """
    conn = transaction.get_connection()  # the wrapper itself: the `connection` proxy costs a lookup per use
    qn = conn.ops.quote_name
    streams = qn(UserStream._meta.db_table)
    counts = Counter(row.recipient_id for row in rows)
    users = sorted(counts)
    columns = [f for f in Notification._meta.concrete_fields if not f.primary_key]
    select: list[str] = []
    scalars: list[Any] = []
    arrays: list[tuple[str, list[Any]]] = [("recipient", [row.recipient_id for row in rows]), ("place", [row.seq for row in rows])]
    for f in columns:
        if f.attname == "recipient_id":
            select.append("a.user_id")
        elif f.attname == "seq":
            select.append("a.base + u.place::bigint")
        elif f.attname == "created_at":
            select.append("a.at")
        else:
            values = [getattr(row, f.attname) for row in rows]
            first = values[0]
            if all(v is first or v == first for v in values):
                select.append(f"%s::{f.db_type(conn)}")
                scalars.append(f.get_db_prep_save(first, conn))
            else:
                select.append(f"u.c{len(arrays)}::{f.db_type(conn)}")
                arrays.append((f.get_internal_type(), values))
    # A varying column is one JSON array (orjson), split by PostgreSQL in C: psycopg's per-element array
    # dumping and Django's per-value preparation were most of a batch's insert before.
    sources = ", ".join(f"json_array_elements{'' if kind == 'JSONField' else '_text'}(%s::json)" for kind, _ in arrays)
    names = ", ".join(["recipient", "place", *(f"c{i}" for i in range(2, len(arrays)))])
    sql = f"""
        WITH locked AS MATERIALIZED (
            SELECT user_id FROM {streams} WHERE user_id = ANY(%s::bigint[]) ORDER BY user_id FOR UPDATE
        ), advanced AS (
            UPDATE {streams} AS s SET head_seq = s.head_seq + m.n, unread = s.unread + m.n
            FROM unnest(%s::bigint[], %s::bigint[]) AS m(user_id, n)
            WHERE s.user_id = m.user_id AND s.user_id IN (SELECT user_id FROM locked)
            RETURNING s.user_id, s.head_seq - m.n AS base, clock_timestamp() AS at
        )
        INSERT INTO {qn(Notification._meta.db_table)} ({", ".join(qn(f.column) for f in columns)})
        SELECT {", ".join(select)} FROM ROWS FROM ({sources}) AS u({names}) JOIN advanced AS a ON a.user_id = u.recipient::bigint
        RETURNING {qn(Notification._meta.pk.column)}, recipient_id, seq, (extract(epoch FROM created_at) * 1000000)::bigint
    """
    varying = [orjson.dumps(values, option=orjson.OPT_NON_STR_KEYS).decode() for _, values in arrays]
    params = [users, users, [counts[u] for u in users], *scalars, *varying]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        stored = cursor.fetchall()
    if len(stored) != len(rows):
        have = {recipient_id for _, recipient_id, _, _ in stored}
        raise _MissingStreams([u for u in users if u not in have])
    base: dict[int, int] = {}  # a user's seqs here are base + 1 .. base + count
    for _, recipient_id, seq, _ in stored:
        base[recipient_id] = min(base.get(recipient_id, seq), seq - 1)
    by_key = {(recipient_id, seq): (id_, micros) for id_, recipient_id, seq, micros in stored}
    # created_at comes as epoch microseconds, one value per user: psycopg's timestamptz loader cost 10 µs a row.
    times = {micros: EPOCH + timedelta(microseconds=micros) for micros in {micros for *_, micros in stored}}
    for row in rows:
        row.seq += base[row.recipient_id]
        row.id, micros = by_key[(row.recipient_id, row.seq)]
        row.created_at = times[micros]


def _store_portable(rows: list[NewRow]) -> None:
    """Other databases (SQLite): lock the streams, advance them one UPDATE per distinct count, bulk_create."""
    counts = Counter(row.recipient_id for row in rows)
    heads = _lock_streams(sorted(counts))
    now = timezone.now()  # under the lock, so created_at follows seq order
    for row in rows:
        row.seq += heads[row.recipient_id]
        row.created_at = now
    users_by_count: dict[int, list[int]] = defaultdict(list)
    for uid, count in counts.items():
        users_by_count[count].append(uid)
    for count, uids in users_by_count.items():
        UserStream.objects.filter(user_id__in=uids).update(head_seq=F("head_seq") + count, unread=F("unread") + count)
    fields = [f.attname for f in Notification._meta.concrete_fields if not f.primary_key]
    stored = Notification.objects.bulk_create(
        [Notification(**{name: getattr(row, name) for name in fields}) for row in rows], batch_size=INSERT_BATCH
    )
    for row, n in zip(rows, stored, strict=True):
        row.id = n.pk


def _request_indexes(requests: Sequence[PublishRequest]) -> Iterable[int]:
    for index, r in enumerate(requests):
        for _ in dict.fromkeys(r.recipient_ids):
            yield index


def _user_in(queryset: QuerySet[Any], user_ids: list[int]) -> QuerySet[Any]:
    """filter(user_id__in=ids); on PostgreSQL as one array parameter, which costs far less to build and bind than 1,000."""
    if transaction.get_connection().vendor == "postgresql":
        return queryset.extra(where=["user_id = ANY(%s)"], params=[user_ids])
    return queryset.filter(user_id__in=user_ids)


def _lock_streams(user_ids: list[int]) -> dict[int, int]:
    """Lock the users' streams in id order (no deadlock between fan-outs); return their heads."""
    if not user_ids:
        return {}
    heads = dict(_user_in(UserStream.objects.select_for_update(), user_ids).order_by("user_id").values_list("user_id", "head_seq"))
    missing = [uid for uid in user_ids if uid not in heads]
    if missing:
        _create_streams(missing)
        heads.update(
            UserStream.objects.select_for_update().filter(user_id__in=missing).order_by("user_id").values_list("user_id", "head_seq")
        )
    return heads


def _create_streams(user_ids: list[int]) -> None:
    """Streams for users who have none yet; an unknown user fails the publish before anything is written."""
    known = set(get_user_model().objects.filter(id__in=user_ids).values_list("id", flat=True))
    unknown = sorted(set(user_ids) - known)
    if unknown:
        raise ServiceError("unknown_recipient", f"no such user: {', '.join(map(str, unknown[:10]))}", status=404)
    UserStream.objects.bulk_create([UserStream(user_id=uid) for uid in user_ids], ignore_conflicts=True)


def _earlier_results(keys: list[str]) -> dict[str, list[Delivery]]:
    if not keys:
        return {}
    found: dict[str, list[Delivery]] = defaultdict(list)
    for key, recipient_id, id_, seq in (
        Notification.objects.filter(idempotency_key__in=keys).order_by("id").values_list("idempotency_key", "recipient_id", "id", "seq")
    ):
        found[str(key)].append(Delivery(recipient_id, id_, seq))
    return dict(found)


def mark_read(*, user_id: int, ids: Sequence[int] = (), everything: bool = False) -> ReadResult:
    """Mark the user's notifications read (ids not theirs are ignored) and tell every device."""
    with transaction.atomic():
        stream = _locked_stream(user_id)
        unread = Notification.objects.filter(recipient_id=user_id, read_at__isnull=True)
        if everything:
            changed: list[int] = []
            count = unread.filter(seq__lte=stream.head_seq).update(read_at=timezone.now())
            up_to_seq: int | None = stream.head_seq
        else:
            changed = list(unread.filter(id__in=ids).values_list("id", flat=True))
            count = Notification.objects.filter(id__in=changed).update(read_at=timezone.now())
            up_to_seq = None
        result = _adjust_unread(stream, -count, changed, up_to_seq)
        if count:
            transaction.on_commit(lambda: events.read_changed(user_id, result))
    return result


def mark_unread(*, user_id: int, ids: Sequence[int]) -> ReadResult:
    with transaction.atomic():
        stream = _locked_stream(user_id)
        changed = list(Notification.objects.filter(recipient_id=user_id, id__in=ids, read_at__isnull=False).values_list("id", flat=True))
        count = Notification.objects.filter(id__in=changed).update(read_at=None)
        result = _adjust_unread(stream, count, changed, None)
        if count:
            transaction.on_commit(lambda: events.unread_changed(user_id, result))
    return result


def mark_read_ids(ids: Sequence[int]) -> int:
    """Mark these notifications read, whoever they belong to (the operator's bulk action). Returns how many changed."""
    with transaction.atomic():
        return sum(len(mark_read(user_id=uid, ids=user_ids).changed_ids) for uid, user_ids in _ids_by_recipient(ids).items())


def mark_unread_ids(ids: Sequence[int]) -> int:
    """Mark these notifications unread, whoever they belong to. Returns how many changed."""
    with transaction.atomic():
        return sum(len(mark_unread(user_id=uid, ids=user_ids).changed_ids) for uid, user_ids in _ids_by_recipient(ids).items())


def _ids_by_recipient(ids: Sequence[int]) -> dict[int, list[int]]:
    """Ids grouped by recipient, recipients in id order: streams are then locked in the order every writer uses."""
    grouped: dict[int, list[int]] = defaultdict(list)
    for id_, uid in Notification.objects.filter(id__in=ids).order_by("recipient_id", "id").values_list("id", "recipient_id"):
        grouped[uid].append(id_)
    return grouped


def _locked_stream(user_id: int) -> UserStream:
    stream = UserStream.objects.select_for_update().filter(user_id=user_id).first()
    return stream or UserStream.objects.get_or_create(user_id=user_id)[0]


def _adjust_unread(stream: UserStream, delta: int, changed: list[int], up_to_seq: int | None) -> ReadResult:
    if delta:
        UserStream.objects.filter(pk=stream.pk).update(unread=F("unread") + delta)
    return ReadResult(changed, up_to_seq, stream.unread + delta, stream.head_seq)


def ack(*, user_id: int, seq: int) -> int:
    """Cumulative ack: the device holds everything up to seq. Returns how many seqs it delivered first."""
    return ack_many({user_id: seq})


def ack_many(acks: Mapping[int, int]) -> int:
    """Cumulative acks of many users, {user_id: seq} (each server process's hub batches them).

    Each user's delivered cursor moves up to the ack, never down and never past
    the head: one row per user, however many notifications the ack covers
    (docs/decisions/0004-delivery-cursor.md). Streams are locked in user id
    order, the order publishers lock them in, so the two never deadlock.
    Returns how many seqs were delivered for the first time.
    """
    if not acks:
        return 0
    with transaction.atomic():
        locked = _user_in(UserStream.objects.select_for_update(), sorted(acks)).order_by("user_id")
        firsts = 0
        moved: dict[int, int] = {}
        for user_id, head, delivered in locked.values_list("user_id", "head_seq", "delivered_seq"):
            seq = min(acks[user_id], head)
            if seq > delivered:
                firsts += seq - delivered
                moved[user_id] = seq
        _move_delivered(moved, timezone.now())
    return firsts


def _move_delivered(moved: dict[int, int], now: datetime) -> None:
    """Set delivered cursors, {user_id: seq}; on PostgreSQL in one UPDATE ... FROM unnest (a flush moves hundreds)."""
    conn = transaction.get_connection()
    if conn.vendor != "postgresql":
        for user_id, seq in moved.items():
            UserStream.objects.filter(user_id=user_id).update(delivered_seq=seq, delivered_at=now)
        return
    if moved:
        with conn.cursor() as cursor:
            cursor.execute(
                f"UPDATE {conn.ops.quote_name(UserStream._meta.db_table)} AS s SET delivered_seq = m.seq, delivered_at = %s"
                " FROM unnest(%s::bigint[], %s::bigint[]) AS m(user_id, seq) WHERE s.user_id = m.user_id",
                [now, list(moved), list(moved.values())],
            )


def delete_notifications(ids: Sequence[int]) -> int:
    """Delete notifications (any recipients), keeping every unread counter exact."""
    with transaction.atomic():
        return _delete_and_recount(Notification.objects.filter(id__in=ids))


def prune(*, now: datetime | None = None) -> int:
    """Delete expired notifications and those older than retention; remember the highest pruned seq."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=conf.get().retention_days)
    doomed = Notification.objects.filter(created_at__lt=cutoff) | Notification.objects.filter(expires_at__lt=now)
    with transaction.atomic():
        old: dict[int, int] = defaultdict(int)
        for uid, seq in Notification.objects.filter(created_at__lt=cutoff).values_list("recipient_id", "seq"):
            old[uid] = max(old[uid], seq)
        for uid, seq in old.items():
            UserStream.objects.filter(user_id=uid, pruned_seq__lt=seq).update(pruned_seq=seq)
        return _delete_and_recount(doomed)


def _delete_and_recount(queryset: QuerySet[Notification]) -> int:
    """Delete rows under their streams' locks, so no concurrent read mark skews the counters."""
    _lock_streams(sorted(set(queryset.values_list("recipient_id", flat=True))))
    unread_lost = Counter(queryset.filter(read_at__isnull=True).values_list("recipient_id", flat=True))
    for uid, lost in unread_lost.items():
        UserStream.objects.filter(user_id=uid).update(unread=F("unread") - lost)
    deleted, _ = queryset.delete()
    return int(deleted)


def redeliver(ids: Sequence[int]) -> int:
    """Push stored notifications again to their recipients' live sockets."""
    rows = list(Notification.objects.filter(id__in=ids).select_related("topic").order_by("recipient_id", "seq"))
    events.notifications_created(rows, redelivery=True)
    return len(rows)


def subscribe(*, user_id: int, slug: str, allow_private: bool = False) -> Subscription:
    topic = Topic.objects.filter(slug=slug).first()
    if topic is None or not (topic.public or allow_private):
        raise NotFound("not_found", f"no topic {slug!r}")
    subscription, _ = Subscription.objects.get_or_create(user_id=user_id, topic=topic)
    return subscription


def unsubscribe(*, user_id: int, slug: str) -> bool:
    deleted, _ = Subscription.objects.filter(user_id=user_id, topic__slug=slug).delete()
    return bool(deleted)


def topic_request(*, topic: Topic, content: Content, idempotency_key: str | None = None) -> PublishRequest:
    """A publish to the topic's current unmuted subscribers, to pass to publish_many with others."""
    subscribers = list(Subscription.objects.filter(topic=topic, muted=False).values_list("user_id", flat=True))
    return PublishRequest(subscribers, Content(**{**content.__dict__, "topic_id": topic.id}), idempotency_key)
