"""`notifications.notify`: what a host project's own code calls, inside its own transaction (docs/integrate.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from . import services, users
from .errors import ServiceError
from .models import Level, Notification, Topic
from .rules import UnsafeUrl, safe_url


def notify(
    recipients: Iterable[AbstractBaseUser | Any],
    *,
    title: str,
    body: str = "",
    url: str = "",
    level: str = "info",
    kind: str = "",
    data: dict[str, Any] | None = None,
    topic: Topic | str | None = None,
    idempotency_key: str | None = None,
) -> list[Notification]:
    """Store one notification per recipient (user instances or primary keys) in the caller's transaction.

    The rows are written by the caller's connection, in its transaction (a
    savepoint of it): they commit with the caller's change, and the live push
    leaves only after that commit. Rolled back, nothing is stored and nothing is
    pushed. `topic` (a Topic or its slug) labels the notification; it does not
    fan out (services.publish_to_topic does). Returns the stored rows; a repeat
    of an idempotency_key returns the rows the first call stored.
    """
    if level not in Level.values:
        raise ServiceError("invalid_field", f"level must be one of {Level.values}", fields={"level": "invalid"})
    try:
        url = safe_url(url)
    except UnsafeUrl as e:
        raise ServiceError("invalid_field", str(e), fields={"url": "invalid"}) from e
    topic_id = None
    if topic is not None:
        found = topic if isinstance(topic, Topic) else Topic.objects.filter(slug=topic).first()
        if found is None:
            raise ServiceError("unknown_topic", f"no topic {topic!r}", status=404)
        topic_id = found.pk
    content = services.Content(
        title=title, body=body, url=url, level=level, kind=kind or "message", data=dict(data or {}), topic_id=topic_id
    )
    ids = [users.to_pk(r.pk if isinstance(r, AbstractBaseUser) else r) for r in recipients]
    result = services.notify(recipient_ids=ids, content=content, idempotency_key=idempotency_key)
    return list(Notification.objects.filter(id__in=[d.id for d in result.deliveries]).order_by("recipient_id", "seq"))
