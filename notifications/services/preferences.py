"""Who wants what, where: users' choices per category and channel, the operator's defaults, quiet hours,
push subscriptions and one-click unsubscribes. `Policy` resolves them for one user and channel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.db import transaction

from .. import delivery
from ..delivery.email import read_unsubscribe_token
from ..models import Channel, ChannelDefault, ChannelPreference, PushSubscription, QuietHours


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
        """When the quiet hours around `now` end, or None when `now` is not in them."""
        zone = ZoneInfo(self.time_zone)
        local = now.astimezone(zone)
        t = local.time().replace(tzinfo=None)
        wraps = self.start > self.end
        inside = (self.start <= t < self.end) if not wraps else (t >= self.start or t < self.end)
        if not inside:
            return None
        end = datetime.combine(local.date(), self.end, tzinfo=zone)
        if end <= local:
            end = datetime.combine(local.date() + timedelta(days=1), self.end, tzinfo=zone)
        return end


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


def policy(*, user_id: int, channel: str, channel_delay: int) -> Policy:
    mine = dict(ChannelPreference.objects.filter(user_id=user_id, channel=channel).values_list("category", "enabled"))
    defaults = {c: (e, d) for c, e, d in ChannelDefault.objects.filter(channel=channel).values_list("category", "enabled", "delay_seconds")}
    return Policy(mine, defaults, channel_delay, quiet_hours(user_id=user_id))


def min_delay(*, channel: str, channel_delay: int) -> int:
    """The shortest delay of any category on a channel: nothing younger can be due."""
    rows = ChannelDefault.objects.filter(channel=channel, delay_seconds__isnull=False).values_list("delay_seconds", flat=True)
    return min([channel_delay, *(d for d in rows if d is not None)])


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


def unsubscribe(*, token: str) -> list[str] | None:
    """One-click unsubscribe: turn email off for the token's categories. None for a bad token."""
    found = read_unsubscribe_token(token)
    if found is None:
        return None
    user_id, categories = found
    for category in categories:
        ChannelPreference.objects.update_or_create(user_id=user_id, channel=Channel.EMAIL, category=category, defaults={"enabled": False})
    return categories


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
