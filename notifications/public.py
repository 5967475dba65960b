"""`notifications.notify`: what a host project's own code calls, inside its own transaction (docs/integrate.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from . import services, users
from .errors import ServiceError
from .fields import Content
from .models import Notification, Topic


def notify(
    recipients: Iterable[AbstractBaseUser | Any],
    *,
    title: str,
    body: str = "",
    url: str = "",
    level: str = "info",
    kind: str = "",
    data: dict[str, Any] | None = None,
    expires_at: datetime | None = None,
    actions: Sequence[Mapping[str, str]] = (),
    group_key: str = "",
    topic: Topic | str | None = None,
    idempotency_key: str | None = None,
) -> list[Notification]:
    """Store one notification per recipient (user instances or primary keys) in the caller's transaction.

    The rows are written by the caller's connection, in its transaction (a
    savepoint of it): they commit with the caller's change, and the live push
    leaves only after that commit. Rolled back, nothing is stored and nothing is
    pushed. `topic` (a Topic or its slug) labels the notification; it does not
    fan out (services.publish_to_topic does). Returns the stored rows; a repeat
    of an idempotency_key returns the rows the first call stored. Every field is
    checked by the API's rules (fields.ContentFields): ServiceError `invalid_field` names what is wrong.
    """
    topic_id = None
    if topic is not None:
        found = topic if isinstance(topic, Topic) else Topic.objects.filter(slug=topic).first()
        if found is None:
            raise ServiceError("unknown_topic", f"no topic {topic!r}", status=404)
        topic_id = found.pk
    content = Content.checked(
        title=title, body=body, url=url, level=level, kind=kind or "message", data=dict(data or {}), expires_at=expires_at,
        actions=actions, group_key=group_key, topic_id=topic_id,
    )  # fmt: skip
    ids = [users.to_pk(r.pk if isinstance(r, AbstractBaseUser) else r) for r in recipients]
    result = services.notify(recipient_ids=ids, content=content, idempotency_key=idempotency_key)
    return list(Notification.objects.filter(id__in=[d.id for d in result.deliveries]).order_by("recipient_id", "seq"))
