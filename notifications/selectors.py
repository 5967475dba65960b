"""Reads: stream state, replay pages, inbox pages. Every query is scoped to one recipient."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from . import protocol
from .models import Notification, Subscription, Topic, UserStream

if TYPE_CHECKING:
    from .services import NewRow


@dataclass(frozen=True)
class StreamState:
    head_seq: int
    unread: int
    pruned_seq: int


@dataclass(frozen=True)
class ReplayPage:
    frames: list[str]
    last_seq: int
    head_seq: int
    more: bool
    reset_reason: str | None = None
    read_state: str | None = None


def stream_state(user_id: int) -> StreamState:
    row = UserStream.objects.filter(user_id=user_id).values_list("head_seq", "unread", "pruned_seq").first()
    return StreamState(*row) if row else StreamState(0, 0, 0)


def heads(user_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(head_seq, unread) of each user, for the heartbeat."""
    return {
        uid: (head, unread)
        for uid, head, unread in UserStream.objects.filter(user_id__in=user_ids).values_list("user_id", "head_seq", "unread")
    }


def live(queryset: QuerySet[Notification], now: datetime | None = None) -> QuerySet[Notification]:
    """Exclude notifications whose expires_at has passed."""
    return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now or timezone.now()))


def delivered() -> Exists:
    """True for a notification at or below its recipient's delivered cursor: some device acked it."""
    return Exists(UserStream.objects.filter(user_id=OuterRef("recipient_id"), delivered_seq__gte=OuterRef("seq")))


def undelivered() -> Exists:
    """The opposite of delivered(), written as a positive EXISTS over the streams that are behind.

    NOT EXISTS made PostgreSQL check every row (595 ms at 1,000,000 rows); this
    way it starts from the few streams behind their head and reads each one's
    seqs above the cursor from the (recipient, seq) index (3 ms).
    """
    return Exists(streams_behind().filter(user_id=OuterRef("recipient_id"), delivered_seq__lt=OuterRef("seq")))


def streams_behind() -> QuerySet[UserStream]:
    """Streams with seqs no device of the user has acked yet."""
    return UserStream.objects.filter(head_seq__gt=F("delivered_seq"))


def oldest_undelivered_at() -> Subquery:
    """To annotate streams with: created_at of the first notification above the delivered cursor (one index lookup)."""
    first = Notification.objects.filter(recipient_id=OuterRef("user_id"), seq__gt=OuterRef("delivered_seq")).order_by("seq")
    return Subquery(first.values("created_at")[:1])


def frame_dict(n: Notification | NewRow, topic_slug: str | None) -> dict[str, Any]:
    return _frame(n.seq, n.id, topic_slug, n.kind, n.title, n.body, n.data, n.url, n.level, n.created_at, n.read_at)


# The columns of a `notification` frame, in _frame's order: replay reads them as tuples.
FRAME_COLUMNS = ("seq", "id", "topic__slug", "kind", "title", "body", "data", "url", "level", "created_at", "read_at")


def _frame(
    seq: int, id_: int, topic: str | None, kind: str, title: str, body: str, data: Any, url: str, level: str,
    created_at: datetime, read_at: datetime | None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "type": "notification",
        "seq": seq,
        "id": id_,
        "topic": topic,
        "kind": kind,
        "title": title,
        "body": body,
        "data": data,
        "url": url,
        "level": level,
        "created_at": created_at,
        "read": read_at is not None,
    }


def read_state(user_id: int, *, up_to_seq: int, state: StreamState) -> str:
    """Which notifications up to a seq are unread now: a device that was away catches up on reads too."""
    ids = list(
        Notification.objects.filter(recipient_id=user_id, read_at__isnull=True, seq__lte=up_to_seq)
        .order_by("seq")
        .values_list("id", flat=True)[: protocol.MAX_READ_STATE_IDS + 1]
    )
    truncated = len(ids) > protocol.MAX_READ_STATE_IDS
    unread_ids = ids[: protocol.MAX_READ_STATE_IDS]
    return protocol.read_state(
        up_to_seq=up_to_seq, unread_ids=unread_ids, unread=state.unread, head_seq=state.head_seq, truncated=truncated
    )


def replay_page(user_id: int, *, since: int, limit: int, with_read_state: bool = False) -> ReplayPage:
    """Notifications with seq > since, oldest first, at most `limit`.

    head_seq is read before the rows: every seq up to a committed head is
    committed too (seqs are allocated under the stream's row lock), so when
    `more` is false the client holds everything up to head_seq.
    """
    state = stream_state(user_id)
    if since < state.pruned_seq:
        return ReplayPage([], state.head_seq, state.head_seq, False, reset_reason="retention")
    if since > state.head_seq:
        return ReplayPage([], state.head_seq, state.head_seq, False, reset_reason="cursor_ahead")
    rows = _replay_frames(user_id, since, state.head_seq, limit)
    more = len(rows) == limit and rows[-1][0] < state.head_seq
    frames = [frame for _, frame in rows]
    last_seq = rows[-1][0] if more else state.head_seq
    read = read_state(user_id, up_to_seq=since, state=state) if with_read_state and since else None
    return ReplayPage(frames, last_seq, state.head_seq, more, read_state=read)


def _replay_frames(user_id: int, since: int, head_seq: int, limit: int) -> list[tuple[int, str]]:
    """(seq, encoded `notification` frame) for seqs in (since, head_seq], oldest first, live ones only.

    On PostgreSQL the frames are built by the database (json_build_object), the
    same fields in the same order as _frame: a 1,000-row page costs ~25 ms
    in Python otherwise, most of it converting and re-encoding each column.
    tests/test_services.py holds the two to the same frames.
    """
    conn = connections[Notification.objects.db]
    if conn.vendor != "postgresql":
        return _replay_frames_portable(user_id, since, head_seq, limit)
    qn = conn.ops.quote_name
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT n.seq, json_build_object("
            "'type', 'notification', 'seq', n.seq, 'id', n.id, 'topic', t.slug, 'kind', n.kind, 'title', n.title,"
            " 'body', n.body, 'data', n.data, 'url', n.url, 'level', n.level, 'created_at', "
            # orjson's RFC 3339: microseconds only when there are any.
            " to_char(n.created_at AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', n.created_at) = n.created_at"
            ' THEN \'YYYY-MM-DD"T"HH24:MI:SS"+00:00"\' ELSE \'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"\' END),'
            " 'read', n.read_at IS NOT NULL)::text"
            f" FROM {qn(Notification._meta.db_table)} n LEFT JOIN {qn(Topic._meta.db_table)} t ON t.id = n.topic_id"
            " WHERE n.recipient_id = %s AND n.seq > %s AND n.seq <= %s AND (n.expires_at IS NULL OR n.expires_at > %s)"
            " ORDER BY n.seq LIMIT %s",
            [user_id, since, head_seq, timezone.now(), limit],
        )
        return [(int(seq), str(frame)) for seq, frame in cursor.fetchall()]


def _replay_frames_portable(user_id: int, since: int, head_seq: int, limit: int) -> list[tuple[int, str]]:
    """_replay_frames through the ORM and orjson, as live pushes encode them (tuples: a third of model instances' cost)."""
    rows = live(Notification.objects.filter(recipient_id=user_id, seq__gt=since, seq__lte=head_seq))
    return [(row[0], protocol.encode(_frame(*row))) for row in rows.order_by("seq").values_list(*FRAME_COLUMNS)[:limit]]


def inbox(
    user_id: int,
    *,
    before: int | None = None,
    since: int | None = None,
    limit: int = 50,
    unread_only: bool = False,
    topic: str | None = None,
) -> list[Notification]:
    """One inbox page: newest first below `before`, or oldest first above `since` (and below `before`, if given)."""
    qs = live(Notification.objects.filter(recipient_id=user_id)).select_related("topic")
    if unread_only:
        qs = qs.filter(read_at__isnull=True)
    if topic:
        qs = qs.filter(topic__slug=topic)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    if since is not None:
        return list(qs.filter(seq__gt=since).order_by("seq")[:limit])
    return list(qs.order_by("-seq")[:limit])


@dataclass(frozen=True)
class TopicChoice:
    slug: str
    title: str
    description: str
    public: bool
    subscribed: bool


def topics_for(user_id: int) -> list[TopicChoice]:
    """Public topics and the private ones the user is in, each with whether the user is subscribed."""
    mine = set(Subscription.objects.filter(user_id=user_id).values_list("topic_id", flat=True))
    rows = Topic.objects.filter(Q(public=True) | Q(id__in=mine)).order_by("slug")
    return [TopicChoice(t.slug, t.title, t.description, t.public, t.id in mine) for t in rows]


def subscriptions_of(user_id: int) -> list[Subscription]:
    return list(Subscription.objects.filter(user_id=user_id).select_related("topic").order_by("topic__slug"))


def user_ids_by_username(usernames: list[str]) -> dict[str, int]:
    """Existing users by username; names not found are absent."""
    from django.contrib.auth import get_user_model

    return dict(get_user_model().objects.filter(username__in=usernames).values_list("username", "id"))


def topics_by_slug(slugs: list[str]) -> dict[str, Topic]:
    return {t.slug: t for t in Topic.objects.filter(slug__in=slugs)}


@dataclass(frozen=True)
class Totals:
    """Whole-service figures for /metrics: one aggregate over the per-user counters, not over notifications."""

    streams: int
    published: int
    unread: int
    topics: int


def totals() -> Totals:
    from django.db.models import Count, Sum

    agg = UserStream.objects.aggregate(streams=Count("pk"), published=Sum("head_seq"), unread=Sum("unread"))
    return Totals(agg["streams"] or 0, agg["published"] or 0, agg["unread"] or 0, Topic.objects.count())
