"""Subscriptions to topics."""

from __future__ import annotations

from ..errors import NotFound
from ..models import Subscription, Topic


def subscribe(*, user_id: int, slug: str, allow_private: bool = False) -> Subscription:
    topic = Topic.objects.filter(slug=slug).first()
    if topic is None or not (topic.public or allow_private):
        raise NotFound("not_found", f"no topic {slug!r}")
    subscription, _ = Subscription.objects.get_or_create(user_id=user_id, topic=topic)
    return subscription


def unsubscribe(*, user_id: int, slug: str) -> bool:
    deleted, _ = Subscription.objects.filter(user_id=user_id, topic__slug=slug).delete()
    return bool(deleted)
