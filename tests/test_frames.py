"""A notification's fields are defined once (notifications/fields.py); every builder and every copy is held to it here.

A field added in one place and missing in another fails one of these tests: the model (and so its
migration), the home (ContentFields, FIELDS), the storage row, the API's schemas, the Python client,
notify(), the CLI, the compose form, the admin, the away channels' Item, and what dashboard.js reads.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import typing
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from django.utils import timezone

from notifications import client, delivery, fields, frames, protocol, public, selectors, services, storage
from notifications.admin.notifications import NotificationAdmin
from notifications.client import Notification as ClientNotification
from notifications.forms import ComposeForm
from notifications.management.commands.notify import Command as NotifyCommand
from notifications.models import Level, Notification, Topic
from notifications.schemas import NotificationOut, PublishIn
from tests.conftest import ROOT

FIELDS = set(frames.FIELD_NAMES)
CONTENT = set(fields.CONTENT_NAMES)
STATIC = ROOT / "notifications" / "static" / "notifications"
APPROVE: fields.Action = {"id": "approve", "label": "Approve ✓", "style": "primary"}
LOGS: fields.Action = {"id": "logs", "label": "Logs", "style": "secondary"}
# Columns that are neither content nor shown: who it is for, and the publisher's retry key.
INTERNAL_COLUMNS = {"id", "recipient_id", "idempotency_key"}


def model_columns() -> set[str]:
    return {f.attname for f in Notification._meta.concrete_fields}


def test_the_model_has_a_column_for_every_field_and_no_column_the_home_does_not_name() -> None:
    read_from = {f.column.split("__")[0] for f in fields.FIELDS}  # topic__slug is read through topic
    # answer__action is read through the answer's reverse one-to-one (models.ActionAnswer), not a column.
    one_to_one = {r.name for r in Notification._meta.related_objects if r.one_to_one}
    assert one_to_one == {"answer"}
    read_from -= one_to_one
    columns = {f.name for f in Notification._meta.concrete_fields} | model_columns()
    assert read_from <= columns and set(fields.CONTENT_COLUMNS) <= model_columns()
    named = {c if c in model_columns() else f"{c}_id" for c in read_from} | set(fields.CONTENT_COLUMNS) | INTERNAL_COLUMNS
    assert model_columns() == named
    assert set(typing.get_args(fields.Level)) == set(Level.values)
    # Every field a publisher sets is shown (expires_at by the API only); topic_id and actor_id are set by the edges.
    assert {f.name for f in fields.FIELDS} >= CONTENT


def test_every_copy_of_the_field_list_matches_the_home() -> None:
    # The Python client is stand-alone (no Django): its dataclass is a copy that must agree.
    assert {f.name for f in dataclasses.fields(ClientNotification)} == FIELDS
    # The HTTP API says as much as a frame, plus the timestamps a frame leaves out (state events carry what changes them).
    assert (
        set(NotificationOut.model_fields)
        == {f.name for f in fields.FIELDS}
        == FIELDS | {"expires_at", "read_at", "archived_at", "snoozed_until", "answer"}
    )
    for name in ("CLOSE_UNAUTHENTICATED", "CLOSE_FORBIDDEN", "CLOSE_RATE_LIMITED"):
        assert getattr(client, name) == getattr(protocol, name), name
    # The admin's detail page shows every column, whether some device acked it, and where it was sent away.
    assert set(NotificationAdmin.fields) == {f.name for f in Notification._meta.concrete_fields} - {"id"} | {"delivered", "sent_away"}


def test_every_way_in_takes_every_field_a_publisher_sets() -> None:
    audience = {"users", "topic"}
    assert set(PublishIn.model_fields) == CONTENT | audience
    assert set(services.Content.model_fields) == CONTENT | {"topic_id", "actor_id"}
    # Keyword arguments a person reads and types: spelled out, and held to the home here.
    assert set(inspect.signature(client.notification_payload).parameters) == CONTENT | audience
    assert set(inspect.signature(client.Client.publish).parameters) == CONTENT | audience | {"self", "idempotency_key"}
    assert set(inspect.signature(public.notify).parameters) == CONTENT | {"recipients", "topic", "idempotency_key"}
    options = {a.dest for a in NotifyCommand().create_parser("manage.py", "notify")._actions}
    assert CONTENT | {"topic", "usernames"} <= options
    # The compose form offers some of them, each under its own name.
    assert set(ComposeForm.base_fields) - {"audience", "usernames", "topic"} <= CONTENT


def test_the_storage_row_and_the_away_item_copy_columns_by_name() -> None:
    # A row being inserted carries every column (storage inserts each by its model name).
    assert set(storage.NewRow.__slots__) == model_columns()
    # An away channel's Item copies its notification's columns of the same names (services/away.py).
    item = {f.name for f in dataclasses.fields(delivery.Item)} - {"topic", "category", "category_label"}
    assert item <= model_columns() and item <= FIELDS


def test_the_dashboard_reads_only_fields_a_frame_or_a_page_item_has() -> None:
    """dashboard.js, item-parts.js and the item template cannot import the list: what they read is checked here."""
    page_only = {"link", "group", "answer"}  # views.item: a safe link, a grouped row's figures, the answer that stands
    read = set(re.findall(r"\bn\.(\w+)", (STATIC / "dashboard.js").read_text()))
    assert {"title", "actions", "group_key"} <= read <= FIELDS | page_only, read - FIELDS - page_only
    parts = (STATIC / "item-parts.js").read_text()
    assert set(re.findall(r"\baction\.(\w+)", parts)) == set(fields.Action.__annotations__)
    group = {f.name for f in dataclasses.fields(selectors.Group)} | {"more", "actors_text"}  # views.item adds two
    assert set(re.findall(r"\bgroup\??\.(\w+)", parts)) <= group
    template = (ROOT / "notifications" / "templates" / "notifications" / "_item.html").read_text()
    shown = set(re.findall(r"\bn\.(\w+)", template))
    assert shown <= FIELDS | page_only, shown - FIELDS - page_only
    assert set(re.findall(r"\bn\.group\.(\w+)", template)) <= group


@pytest.mark.django_db
def test_every_builder_writes_the_same_frame(user: Any) -> None:
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    contents = [
        services.Content(title="plain"),
        services.Content(
            title='quote " and \\ and ünïcode ✓', body="line\nbreak", kind="deploy", level="error", url="/x?a=1&b=2",
            data={"nested": {"list": [1, 2.5, None, True]}, "text": "é"}, topic_id=topic.id,
        ),
        services.Content(title="asks", group_key="deploys", actions=[APPROVE, {**LOGS, "url": "/l"}]),
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
    assert live[2]["group_key"] == "deploys" and live[2]["actions"][1] == {"id": "logs", "label": "Logs", "style": "secondary", "url": "/l"}
    assert live[2]["actions"][0]["url"] == "" and live[0]["actions"] == [] and live[0]["group_key"] == ""
    now = timezone.now() + timedelta(seconds=1)
    for backend in (storage.portable.BACKEND, storage.backend()):
        replayed = [orjson.loads(text) for _, text in backend.replay_frames(user.id, since=0, head_seq=4, limit=10, now=now)]
        assert replayed == live, type(backend).__name__  # and the expired one is left out
    assert "." not in live[0]["created_at"]  # whole seconds are written without a fraction, by every builder
    assert ClientNotification.from_dict(live[1]).title == contents[1].title
    asks = ClientNotification.from_dict(live[2])
    assert asks.group_key == "deploys"
    assert asks.actions == (client.Action("approve", "Approve ✓", "primary"), client.Action("logs", "Logs", "secondary", "/l"))


# One non-default value per field a publisher sets: a field added to the home without one fails here.
EXAMPLE: dict[str, Any] = {
    "kind": "deploy.asked",
    "title": "Deploy v2.3?",
    "body": "12 nodes",
    "data": {"version": "2.3", "nodes": [1, 2]},
    "url": "/deploys/23",
    "level": "warning",
    "expires_at": "2999-01-02T03:04:05+00:00",
    "actions": [{**APPROVE, "url": ""}, {**LOGS, "url": "https://ci.example/logs/23"}],
    "group_key": "deploys ✓",
}


def stored(user: Any) -> dict[str, Any]:
    row = Notification.objects.filter(recipient=user).order_by("-seq").values(*fields.CONTENT_NAMES)[0]
    return {**row, "expires_at": row["expires_at"].isoformat()}


@pytest.mark.django_db
def test_every_way_in_carries_every_field(user: Any, make_user: Any, token_for: Any) -> None:
    from django.core.management import call_command
    from django.test import Client

    assert set(EXAMPLE) == CONTENT
    # notify(), in the host's code
    public.notify([user], **{**EXAMPLE, "expires_at": datetime.fromisoformat(EXAMPLE["expires_at"])})
    assert stored(user) == EXAMPLE
    # the HTTP API, with the body the Python client builds
    Notification.objects.all().delete()
    body = client.notification_payload(users=[user.id], **EXAMPLE)
    token = token_for(make_user("svc"), ("publish",))
    response = Client().post("/api/v1/notifications", body, content_type="application/json", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.content
    assert stored(user) == EXAMPLE
    # the CLI: every field an option, JSON for data and actions
    Notification.objects.all().delete()
    options = [f"--{k.replace('_', '-')}={v if isinstance(v, str) else orjson.dumps(v).decode()}" for k, v in EXAMPLE.items()]
    call_command("notify", user.get_username(), *options, stdout=io.StringIO())
    assert stored(user) == EXAMPLE
