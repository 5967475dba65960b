"""Reads: stream state, replay pages, inbox pages. Every query is scoped to one recipient."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult, get_date_max

from . import protocol, storage, users
from .models import AwayDelivery, ChannelCursor, InboxEvent, Notification, Subscription, Topic, UserStream


@dataclass(frozen=True)
class StreamState:
    head_seq: int
    unread: int
    unseen: int
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
    # Read on every connect: plain SQL, since building this query with the ORM
    # cost several times what PostgreSQL takes to answer it (docs/benchmarks.md).
    with connection.cursor() as cursor:
        cursor.execute(_STREAM_STATE_SQL, [users.db_value(user_id, connection)])
        row = cursor.fetchone()
    return StreamState(*row) if row else StreamState(0, 0, 0, 0)


STREAM_TABLE = UserStream._meta.db_table


def stream_state_columns(alias: str) -> str:
    """StreamState's columns of STREAM_TABLE under `alias`, in order; 0 for a user with no stream yet (a LEFT JOIN)."""
    return ", ".join(f"COALESCE({alias}.{f.name}, 0)" for f in fields(StreamState))


_STREAM_STATE_SQL = f"SELECT {stream_state_columns('s')} FROM {STREAM_TABLE} s WHERE s.user_id = %s"


def heads(user_ids: list[users.UserId]) -> dict[users.UserId, tuple[int, int, int]]:
    """(head_seq, unread, unseen) of each user, for the heartbeat."""
    rows = UserStream.objects.filter(user_id__in=user_ids).values_list("user_id", "head_seq", "unread", "unseen")
    return {uid: (head, unread, unseen) for uid, head, unread, unseen in rows}


def live(queryset: QuerySet[Notification], now: datetime | None = None) -> QuerySet[Notification]:
    """Exclude notifications whose expires_at has passed."""
    return queryset.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now or timezone.now()))


def delivered() -> Exists:
    """True for a notification at or below its recipient's delivered cursor: some device acked it."""
    return Exists(UserStream.objects.filter(user_id=OuterRef("recipient_id"), delivered_seq__gte=OuterRef("seq")))


def undelivered() -> Exists:
    """The opposite of delivered(), written as a positive EXISTS over the streams that are behind.

    Not NOT EXISTS: that makes PostgreSQL check every row; this starts from the
    few streams behind their head and reads each one's seqs above the cursor
    from the (recipient, seq) index.
    """
    return Exists(streams_behind().filter(user_id=OuterRef("recipient_id"), delivered_seq__lt=OuterRef("seq")))


def streams_behind() -> QuerySet[UserStream]:
    """Streams with seqs no device of the user has acked yet."""
    return UserStream.objects.filter(head_seq__gt=F("delivered_seq"))


def oldest_undelivered_at() -> Subquery:
    """To annotate streams with: created_at of the first notification above the delivered cursor (one index lookup)."""
    first = Notification.objects.filter(recipient_id=OuterRef("user_id"), seq__gt=OuterRef("delivered_seq")).order_by("seq")
    return Subquery(first.values("created_at")[:1])


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
    """Notifications and inbox events with seq > since, merged in seq order, at most `limit`.

    head_seq is read before the rows: every seq up to a committed head is
    committed too (seqs are allocated under the stream's row lock), so when
    `more` is false the client holds everything up to head_seq.
    """
    state = stream_state(user_id)
    if since < state.pruned_seq:
        return ReplayPage([], state.head_seq, state.head_seq, False, reset_reason="retention")
    if since > state.head_seq:
        return ReplayPage([], state.head_seq, state.head_seq, False, reset_reason="cursor_ahead")
    notifications = storage.backend(Notification.objects.db).replay_frames(
        user_id, since=since, head_seq=state.head_seq, limit=limit, now=timezone.now()
    )
    # Each list is the first `limit` of its kind, so the first `limit` of both merged are the first of the stream.
    rows = sorted(notifications + event_frames(user_id, since=since, head_seq=state.head_seq, limit=limit))[:limit]
    more = len(rows) == limit and rows[-1][0] < state.head_seq
    frames = [frame for _, frame in rows]
    last_seq = rows[-1][0] if more else state.head_seq
    read = read_state(user_id, up_to_seq=since, state=state) if with_read_state and since else None
    return ReplayPage(frames, last_seq, state.head_seq, more, read_state=read)


def event_frames(user_id: int, *, since: int, head_seq: int, limit: int) -> list[tuple[int, str]]:
    """(seq, encoded `state` frame) of the user's inbox events in (since, head_seq], oldest first."""
    rows = InboxEvent.objects.filter(user_id=user_id, seq__gt=since, seq__lte=head_seq).order_by("seq")
    return [
        (seq, protocol.encode(protocol.state_event(seq=seq, op=op, fields=body)))
        for seq, op, body in rows.values_list("seq", "op", "body")[:limit]
    ]


class View:
    """Which of a user's notifications a list shows."""

    INBOX = "inbox"  # neither archived nor snoozed
    ARCHIVED = "archived"
    SNOOZED = "snoozed"


def in_view(queryset: QuerySet[Notification], view: str) -> QuerySet[Notification]:
    if view == View.ARCHIVED:
        return queryset.filter(archived_at__isnull=False)
    if view == View.SNOOZED:
        return queryset.filter(snoozed_until__isnull=False)
    return queryset.filter(archived_at__isnull=True, snoozed_until__isnull=True)


def inbox(
    user_id: int,
    *,
    before: int | None = None,
    since: int | None = None,
    limit: int = 50,
    unread_only: bool = False,
    topic: str | None = None,
    group_key: str | None = None,
    view: str = View.INBOX,
) -> list[Notification]:
    """One page of a view: newest first below `before`, or oldest first above `since` (and below `before`, if given).

    With `group_key`: that group's members only.
    """
    qs = _inbox_queryset(user_id, unread_only=unread_only, topic=topic, view=view)
    if group_key is not None:
        qs = qs.filter(group_key=group_key)
    if before is not None:
        qs = qs.filter(seq__lt=before)
    if since is not None:
        return list(qs.filter(seq__gt=since).order_by("seq")[:limit])
    return list(qs.order_by("-seq")[:limit])


def _inbox_queryset(user_id: int, *, unread_only: bool, topic: str | None, view: str = View.INBOX) -> QuerySet[Notification]:
    qs = in_view(live(Notification.objects.filter(recipient_id=user_id)), view).select_related("topic", "answer")
    if unread_only:
        qs = qs.filter(read_at__isnull=True)
    if topic:
        qs = qs.filter(topic__slug=topic)
    return qs


MAX_GROUP_ACTORS = 5  # named on a grouped row ("ana, bo and 3 others")


@dataclass(frozen=True)
class Group:
    """A group as its inbox row shows it: every member the query matches, not only those on the page."""

    key: str
    count: int
    unread: int
    actors: list[str]  # distinct, the latest first, at most MAX_GROUP_ACTORS
    actor_count: int


@dataclass(frozen=True)
class InboxRow:
    notification: Notification  # a group's row shows its latest member
    group: Group | None


def inbox_rows(
    user_id: int,
    *,
    before: int | None = None,
    limit: int = 50,
    unread_only: bool = False,
    topic: str | None = None,
    group_key: str | None = None,
) -> list[InboxRow]:
    """One page of the inbox as it is shown: newest first below `before`, one row per group_key.

    A notification with a group_key stands for its group when it is the group's latest among those the
    filters match, so a group is on one page only, where its latest is (paging by `before` never shows it
    twice). Grouping is how the inbox is shown: replay, de-duplication and read state stay per notification.
    With `group_key`: that group's row alone.
    """
    matching = _inbox_queryset(user_id, unread_only=unread_only, topic=topic)
    if group_key is not None:
        matching = matching.filter(group_key=group_key)
    newer_in_group = matching.filter(group_key=OuterRef("group_key"), seq__gt=OuterRef("seq"))
    qs = matching.filter(Q(group_key="") | ~Exists(newer_in_group))
    if before is not None:
        qs = qs.filter(seq__lt=before)
    rows = list(qs.order_by("-seq")[:limit])
    groups = _groups(matching, sorted({n.group_key for n in rows if n.group_key}))
    return [InboxRow(n, groups.get(n.group_key)) for n in rows]


def _groups(matching: QuerySet[Notification], keys: list[str]) -> dict[str, Group]:
    if not keys:
        return {}
    members = matching.filter(group_key__in=keys).order_by()
    counts = members.values("group_key").annotate(count=Count("id"), unread=Count("id", filter=Q(read_at__isnull=True)))
    by_actor = (
        members.filter(actor__isnull=False).values_list("group_key", "actor_id").annotate(last=Max("seq")).order_by("group_key", "-last")
    )
    actor_ids: dict[str, list[int]] = {}
    for key, actor_id, _ in by_actor:
        actor_ids.setdefault(key, []).append(actor_id)
    shown = {a for ids in actor_ids.values() for a in ids[:MAX_GROUP_ACTORS]}
    names = _login_names(sorted(shown)) if shown else {}
    return {
        c["group_key"]: Group(
            key=c["group_key"],
            count=c["count"],
            unread=c["unread"],
            actors=[names.get(a, "") for a in actor_ids.get(c["group_key"], [])[:MAX_GROUP_ACTORS]],
            actor_count=len(actor_ids.get(c["group_key"], [])),
        )
        for c in counts
    }


def _login_names(user_ids: list[users.UserId]) -> dict[users.UserId, str]:
    from django.contrib.auth import get_user_model

    login = users.login_field()
    return {pk: str(name) for pk, name in get_user_model()._default_manager.filter(pk__in=user_ids).values_list("pk", login)}


def unread_rows(user_id: int) -> int:
    """Unread rows as the grouped inbox shows them: each unread notification without a group, and each group
    with an unread member once. One aggregate over the user's unread notifications (the partial unread index)."""
    unread = in_view(live(Notification.objects.filter(recipient_id=user_id, read_at__isnull=True)), View.INBOX)
    agg = unread.aggregate(single=Count("id", filter=Q(group_key="")), groups=Count("group_key", distinct=True, filter=~Q(group_key="")))
    return int(agg["single"]) + int(agg["groups"])


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


def active_user_ids(usernames: list[str]) -> dict[str, int]:
    """The ids of the active users among these names: the one way every edge (API, forms, CLI) sends to a name.

    An inactive user cannot log in to read a notification, so a name is sent to only while active;
    unknown and inactive names are absent.
    """
    from django.contrib.auth import get_user_model

    login = users.login_field()
    return dict(get_user_model()._default_manager.filter(**{f"{login}__in": usernames}, **users.active_only()).values_list(login, "pk"))


def active_ids(user_ids: list[int]) -> set[int]:
    """Those of these ids that are active users: an id is sent to on the same terms as a name."""
    from django.contrib.auth import get_user_model

    return set(get_user_model()._default_manager.filter(pk__in=user_ids, **users.active_only()).values_list("pk", flat=True))


def topic_audience(topic_id: int) -> list[int]:
    """Who a publish to the topic reaches: its current, unmuted, active subscribers."""
    return list(
        Subscription.objects.filter(topic_id=topic_id, muted=False, **users.active_only("user__")).values_list("user_id", flat=True)
    )


def topic_slugs(topic_ids: set[int]) -> dict[int, str]:
    return dict(Topic.objects.filter(id__in=topic_ids).values_list("id", "slug")) if topic_ids else {}


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
    agg = UserStream.objects.aggregate(streams=Count("pk"), published=Sum("head_seq"), unread=Sum("unread"))
    return Totals(agg["streams"] or 0, agg["published"] or 0, agg["unread"] or 0, Topic.objects.count())


def away_candidates(*, channel: str, streams: QuerySet[UserStream], cutoff: datetime, now: datetime, limit: int) -> list[int]:
    """Users who may have work due on an away channel: unacked seqs above the channel's cursor, the first of
    them published before `cutoff` (seqs follow publish time), and no hold on the cursor. Oldest work first."""
    cursor = ChannelCursor.objects.filter(user_id=OuterRef("user_id"), channel=channel)
    # Archived and snoozed ones are never sent away (a woken one is back in the inbox, at a new seq).
    first = in_view(Notification.objects.filter(recipient_id=OuterRef("user_id"), seq__gt=OuterRef("from_seq")), View.INBOX).order_by("seq")
    rows = (
        streams.filter(head_seq__gt=F("delivered_seq"))
        .annotate(swept=Coalesce(Subquery(cursor.values("seq")[:1]), 0), held=Subquery(cursor.values("hold_until")[:1]))
        .annotate(from_seq=Greatest(F("delivered_seq"), F("swept")))
        .filter(head_seq__gt=F("from_seq"))
        .filter(Q(held__isnull=True) | Q(held__lte=now))
        .annotate(first_at=Subquery(first.values("created_at")[:1]))
        .filter(first_at__lte=cutoff)
        .order_by("first_at")
    )
    return list(rows.values_list("user_id", flat=True)[:limit])


def away_deliveries(notification_id: int) -> list[AwayDelivery]:
    """Where a notification went besides the inbox (email, Web Push), or was decided against."""
    return list(AwayDelivery.objects.filter(notification_id=notification_id).order_by("at", "channel"))


@dataclass(frozen=True)
class WorkerStatus:
    """The away-channel workers as the task engine's own table (django-tasks' database backend) shows them."""

    due: int  # tasks past their run_after, not yet claimed: workers that keep up hold this near 0
    running: int
    last_finished_at: datetime | None  # None: no worker has finished a task (in the hour the results are kept)
    failed_last_hour: int


def worker_status(*, now: datetime | None = None) -> WorkerStatus:
    now = now or timezone.now()
    ready = Q(status=TaskResultStatus.READY) & (Q(run_after=get_date_max()) | Q(run_after__lte=now))
    failed = Q(status=TaskResultStatus.FAILED, finished_at__gte=now - timedelta(hours=1))
    agg = DBTaskResult.objects.aggregate(
        due=Count("pk", filter=ready),
        running=Count("pk", filter=Q(status=TaskResultStatus.RUNNING)),
        last=Max("finished_at"),
        failed=Count("pk", filter=failed),
    )
    return WorkerStatus(due=agg["due"], running=agg["running"], last_finished_at=agg["last"], failed_last_hour=agg["failed"])
