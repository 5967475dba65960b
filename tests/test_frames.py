"""The `notification` frame is defined once (notifications/frames.py); every builder and copy is held to it here."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.utils import timezone

from notifications import client, frames, protocol, services, storage
from notifications.admin.notifications import NotificationAdmin
from notifications.client import Notification as ClientNotification
from notifications.models import Notification, Topic
from notifications.schemas import NotificationOut

FIELDS = set(frames.FIELD_NAMES)


def test_every_copy_of_the_field_list_matches_the_frame() -> None:
    # The Python client is stand-alone (no Django): its dataclass is a copy that must agree.
    assert {f.name for f in dataclasses.fields(ClientNotification)} == FIELDS
    # The HTTP API says as much as a frame, plus the timestamps a frame leaves out (state events carry what changes them).
    assert set(NotificationOut.model_fields) == FIELDS | {"expires_at", "read_at", "archived_at", "snoozed_until"}
    for name in ("CLOSE_UNAUTHENTICATED", "CLOSE_FORBIDDEN", "CLOSE_RATE_LIMITED"):
        assert getattr(client, name) == getattr(protocol, name), name
    # The admin's detail page shows every column, whether some device acked it, and where it was sent away.
    assert set(NotificationAdmin.fields) == {f.name for f in Notification._meta.concrete_fields} - {"id"} | {"delivered", "sent_away"}


@pytest.mark.django_db
def test_every_builder_writes_the_same_frame(user: Any) -> None:
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    contents = [
        services.Content(title="plain"),
        services.Content(
            title='quote " and \\ and ünïcode ✓', body="line\nbreak", kind="deploy", level="error", url="/x?a=1&b=2",
            data={"nested": {"list": [1, 2.5, None, True]}, "text": "é"}, topic_id=topic.id,
        ),
        services.Content(title="read later"),
        services.Content(title="expired", expires_at=timezone.now() + timedelta(hours=1)),
    ]  # fmt: skip
    services.publish_many([services.PublishRequest([user.id], c) for c in contents])
    Notification.objects.filter(recipient=user, seq=1).update(created_at=timezone.now().replace(microsecond=0))
    services.mark_read(user_id=user.id, ids=list(Notification.objects.filter(recipient=user, seq=3).values_list("id", flat=True)))
    Notification.objects.filter(recipient=user, seq=4).update(expires_at=timezone.now())
    rows = list(Notification.objects.filter(recipient=user, seq__lt=4).select_related("topic").order_by("seq"))

    live = [orjson.loads(protocol.encode(frames.notification_frame(n, n.topic.slug if n.topic else None))) for n in rows]
    assert all(list(f) == ["type", *frames.FIELD_NAMES] for f in live)
    assert [f["read"] for f in live] == [False, False, True] and live[1]["topic"] == "deploys"
    now = timezone.now() + timedelta(seconds=1)
    for backend in (storage.portable.BACKEND, storage.backend()):
        replayed = [orjson.loads(text) for _, text in backend.replay_frames(user.id, since=0, head_seq=4, limit=10, now=now)]
        assert replayed == live, type(backend).__name__  # and the expired one is left out
    assert "." not in live[0]["created_at"]  # whole seconds are written without a fraction, by every builder
    assert ClientNotification.from_dict(live[1]).title == contents[1].title
