"""Who wants what, where: users' choices per category and channel, the operator's defaults, quiet hours,
push subscriptions and one-click unsubscribes. `Policy` resolves them for one user and channel."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.db import transaction

from .. import delivery
from ..delivery.email import read_unsubscribe_token
from ..models import Channel, ChannelDefault, ChannelPreference, PushSubscription, QuietHours, Topic


@dataclass(frozen=True)
class Choice:
    channel: str
    category: str
    enabled: bool


@dataclass(frozen=True)
class Quiet:
    time_zone: str
    start: time
    end: time

    def until(self, now: datetime) -> datetime | None:
        """When the quiet hours around `now` end, or None when `now` is not in them.

        The end is the first instant after `now` at which the local clock reads `end`: in the autumn's
        repeated hour that is the occurrence still ahead (not the one an hour ago), and in the spring
        gap, where the clock never reads it, the moment the clock jumps past it."""
        zone = ZoneInfo(self.time_zone)
        local = now.astimezone(zone)
        t = local.time()
        wraps = self.start > self.end
        inside = (self.start <= t < self.end) if not wraps else (t >= self.start or t < self.end)
        if not inside:
            return None
        return min(i for day in (local.date(), local.date() + timedelta(days=1)) for i in _instants(day, self.end, zone) if i > now)


def _instants(day: date, wall: time, zone: ZoneInfo) -> list[datetime]:
    """The instants (UTC) at which the clock in `zone` reaches `wall` on `day`: one, two in a repeated hour,
    or in a skipped hour the jump past it."""
    first = datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)  # fold=0: the offset before a change
    second = datetime.combine(day, wall, tzinfo=zone).replace(fold=1).astimezone(UTC)
    if first <= second:
        return sorted({first, second})
    # A gap: `second` is before the jump, `first` after it; find the jump to the second.
    wanted = datetime.combine(day, wall)
    low, high = second, first
    while high - low > timedelta(seconds=1):
        mid = low + timedelta(seconds=int((high - low).total_seconds()) // 2)
        if mid.astimezone(zone).replace(tzinfo=None) >= wanted:
            high = mid
        else:
            low = mid
    return [high]


@dataclass(frozen=True)
class Verdict:
    enabled: bool
    delay_seconds: int


@dataclass(frozen=True)
class Policy:
    """One user's rules on one channel: the user's choice, else the operator's default, else the channel's (on)."""

    mine: dict[str, bool]
    defaults: dict[str, tuple[bool, int | None]]
    channel_delay: int
    quiet: Quiet | None

    def verdict(self, *, kind: str, topic: str | None) -> Verdict:
        cats = delivery.categories(kind, topic)
        delay = next((d for c in cats if c in self.defaults and (d := self.defaults[c][1]) is not None), self.channel_delay)
        for c in cats:
            if c in self.mine:
                return Verdict(self.mine[c], delay)
        for c in cats:
            if c in self.defaults:
                return Verdict(self.defaults[c][0], delay)
        return Verdict(True, delay)

    def fallback(self, category: str) -> bool:
        """What a category gets while the user leaves it at "Default": their choice for a wider category,
        else the operator's default for it or a wider one, else on. (A notification also falls in its kind's
        categories, which may decide otherwise; this is what the category itself says.)"""
        chain = delivery.wider(category)
        for c in chain[1:]:
            if c in self.mine:
                return self.mine[c]
        return next((self.defaults[c][0] for c in chain if c in self.defaults), True)


def policy(*, user_id: int, channel: str, channel_delay: int) -> Policy:
    mine = dict(ChannelPreference.objects.filter(user_id=user_id, channel=channel).values_list("category", "enabled"))
    defaults = {c: (e, d) for c, e, d in ChannelDefault.objects.filter(channel=channel).values_list("category", "enabled", "delay_seconds")}
    return Policy(mine, defaults, channel_delay, quiet_hours(user_id=user_id))


def min_delay(*, channel: str, channel_delay: int) -> int:
    """The shortest delay of any category on a channel: nothing younger can be due."""
    rows = ChannelDefault.objects.filter(channel=channel, delay_seconds__isnull=False).values_list("delay_seconds", flat=True)
    return min([channel_delay, *(d for d in rows if d is not None)])


def fallbacks(*, user_id: int, categories: Iterable[str]) -> dict[tuple[str, str], bool]:
    """{(channel, category): on?} for what "Default" means on the preferences page."""
    rules = {ch: policy(user_id=user_id, channel=ch, channel_delay=0) for ch in Channel.values}
    return {(ch, c): rules[ch].fallback(c) for c in categories for ch in Channel.values}


def quiet_hours(*, user_id: int) -> Quiet | None:
    row = QuietHours.objects.filter(user_id=user_id).first()
    return Quiet(row.time_zone, row.start, row.end) if row else None


def choices(*, user_id: int) -> list[Choice]:
    rows = ChannelPreference.objects.filter(user_id=user_id).order_by("channel", "category")
    return [Choice(r.channel, r.category, r.enabled) for r in rows]


def set_preferences(*, user_id: int, choices: Sequence[Choice], quiet: Quiet | None) -> None:
    """Replace the user's choices and quiet hours with these (validated at the edge)."""
    with transaction.atomic():
        ChannelPreference.objects.filter(user_id=user_id).delete()
        ChannelPreference.objects.bulk_create(
            [ChannelPreference(user_id=user_id, channel=c.channel, category=c.category, enabled=c.enabled) for c in choices]
        )
        QuietHours.objects.filter(user_id=user_id).delete()
        if quiet is not None:
            QuietHours.objects.create(user_id=user_id, time_zone=quiet.time_zone, start=quiet.start, end=quiet.end)


def category_label(category: str, *, topic_titles: Mapping[str, str]) -> str:
    """The words a person reads for a category key: "Everything", a topic's title, or a readable kind
    ("kind:build.failed" -> "Build failed notifications"). The one place a key becomes a label."""
    if not category:
        return "Everything"
    prefix, _, name = category.partition(":")
    if prefix == "topic":
        return topic_titles.get(name) or name
    words = " ".join(w for w in name.replace(".", " ").replace("_", " ").replace("-", " ").split())
    return f"{words[:1].upper()}{words[1:]} notifications"


def category_labels(categories: Iterable[str]) -> dict[str, str]:
    """{category: label}, with the topics' titles read in one query."""
    wanted = list(categories)
    slugs = [c.removeprefix("topic:") for c in wanted if c.startswith("topic:")]
    titles = dict(Topic.objects.filter(slug__in=slugs).values_list("slug", "title"))
    return {c: category_label(c, topic_titles=titles) for c in wanted}


@dataclass(frozen=True)
class UnsubscribeLink:
    """What a valid unsubscribe token names. `user_gone`: its user was deleted since, so it applies to no one."""

    user_id: int
    categories: list[str]
    labels: list[str]
    user_gone: bool


def unsubscribe_link(*, token: str) -> UnsubscribeLink | None:
    """Read a token without acting on it (the confirm page says what will stop). None for a bad token."""
    found = read_unsubscribe_token(token)
    if found is None:
        return None
    user_id, categories = found
    labels = category_labels(categories)
    gone = not get_user_model().objects.filter(pk=user_id).exists()
    return UnsubscribeLink(user_id, categories, [labels[c] for c in categories], gone)


def unsubscribe(*, token: str) -> UnsubscribeLink | None:
    """One-click unsubscribe: turn email off for the token's categories. None for a bad token; a token of a
    deleted user changes nothing."""
    link = unsubscribe_link(token=token)
    if link is None or link.user_gone:
        return link
    with transaction.atomic():
        # The user's row locked: deleting them now waits, rather than the insert failing on its foreign key.
        if not get_user_model().objects.select_for_update().filter(pk=link.user_id).exists():
            return replace(link, user_gone=True)
        for category in link.categories:
            ChannelPreference.objects.update_or_create(
                user_id=link.user_id, channel=Channel.EMAIL, category=category, defaults={"enabled": False}
            )
    return link


@transaction.atomic
def add_push_subscription(*, user_id: int, endpoint: str, p256dh: str, auth: str, keep: int) -> PushSubscription:
    """Idempotent per endpoint; an endpoint another user had moves to this one (the browser is theirs now).
    A user keeps at most `keep` subscriptions: the oldest give way to the new one."""
    # The user's row serialises their subscribes, so two at once cannot both keep `keep` old ones.
    list(get_user_model().objects.select_for_update().filter(pk=user_id).values_list("pk", flat=True))
    subscription, _ = PushSubscription.objects.update_or_create(
        endpoint=endpoint, defaults={"user_id": user_id, "p256dh": p256dh, "auth": auth}
    )
    older = PushSubscription.objects.filter(user_id=user_id).exclude(pk=subscription.pk).order_by("-created_at", "-id")
    PushSubscription.objects.filter(pk__in=list(older.values_list("pk", flat=True)[max(keep - 1, 0) :])).delete()
    return subscription


def remove_push_subscription(*, user_id: int, endpoint: str) -> bool:
    return PushSubscription.objects.filter(user_id=user_id, endpoint=endpoint).delete()[0] > 0
