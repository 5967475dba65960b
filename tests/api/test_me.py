"""The caller's own inbox, read state, topics, subscriptions and WebSocket ticket (notifications/api/me.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from notifications import auth, services
from notifications.models import Notification, Subscription, Topic
from tests.api.conftest import Api, assert_error, notify_many

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


# --- inbox ----------------------------------------------------------------------------


def test_inbox_pages_newest_first_with_before(reader: Api, user: Any) -> None:
    notify_many(user, 5)
    page = reader.get("/me/notifications", limit=2).json()
    assert [n["seq"] for n in page["items"]] == [5, 4]
    assert (page["head_seq"], page["unread"], page["next_before"], page["next_since"]) == (5, 5, 4, None)
    page = reader.get("/me/notifications", limit=2, before=page["next_before"]).json()
    assert [n["seq"] for n in page["items"]] == [3, 2]
    page = reader.get("/me/notifications", limit=2, before=page["next_before"]).json()
    assert [n["seq"] for n in page["items"]] == [1] and page["next_before"] is None
    item = reader.get("/me/notifications", limit=1).json()["items"][0]
    assert set(item) == {
        "id",
        "seq",
        "topic",
        "kind",
        "title",
        "body",
        "data",
        "url",
        "level",
        "created_at",
        "expires_at",
        "read",
        "read_at",
        "actions",
        "group_key",
        "group",  # null: a grouped row's figures (grouped=true)
        "archived_at",
        "snoozed_until",
        "answer",
    }


def test_inbox_catches_up_oldest_first_with_since(reader: Api, user: Any) -> None:
    notify_many(user, 5)
    page = reader.get("/me/notifications", since=1, limit=3).json()
    assert [n["seq"] for n in page["items"]] == [2, 3, 4] and page["next_since"] == 4 and page["next_before"] is None
    page = reader.get("/me/notifications", since=4, limit=3).json()
    assert [n["seq"] for n in page["items"]] == [5] and page["next_since"] is None
    page = reader.get("/me/notifications", since=1, before=4).json()
    assert [n["seq"] for n in page["items"]] == [2, 3]


def test_inbox_filters_unread_and_topic_and_hides_expired(reader: Api, user: Any) -> None:
    topic = Topic.objects.create(slug="ci", title="CI")
    first = notify_many(user, 2)
    services.notify(recipient_ids=[user.id], content=services.Content(title="ci", topic_id=topic.id))
    services.notify(recipient_ids=[user.id], content=services.Content.trusted(title="gone", expires_at=timezone.now() - timedelta(1)))
    services.mark_read(user_id=user.id, ids=[first[0].id])
    assert [n["title"] for n in reader.get("/me/notifications").json()["items"]] == ["ci", "n1", "n0"]
    assert [n["title"] for n in reader.get("/me/notifications", unread="true").json()["items"]] == ["ci", "n1"]
    items = reader.get("/me/notifications", topic="ci").json()["items"]
    assert [(n["title"], n["topic"]) for n in items] == [("ci", "ci")]


def test_inbox_shows_only_my_notifications(reader: Api, user: Any, make_user: Any) -> None:
    notify_many(make_user(), 3)
    page = reader.get("/me/notifications").json()
    assert page["items"] == [] and page["head_seq"] == 0


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"since": -1}, {"before": "x"}, {"topic": "no spaces"}, {"unread": "maybe"}]
)
def test_inbox_bad_query_is_422(reader: Api, params: dict[str, Any]) -> None:
    assert_error(reader.get("/me/notifications", **params), 422, "invalid")


# --- read state -----------------------------------------------------------------------


def test_mark_read_by_ids_and_all(reader: Api, user: Any, make_user: Any) -> None:
    mine = notify_many(user, 3)
    theirs = notify_many(make_user(), 1)
    r = reader.post("/me/notifications/read", {"ids": [mine[0].id, theirs[0].id]})
    # The answer says what it always said (the rest is docs/api.md's, for every change).
    assert r.status_code == 200 and r.json() | {"changed_ids": [mine[0].id], "up_to_seq": None, "unread": 2} == r.json()
    assert Notification.objects.get(id=theirs[0].id).read_at is None
    assert reader.get("/me/unread-count").json() == {"unread": 2, "unseen": 3, "head_seq": 4}  # the read mark is seq 4
    everything = reader.post("/me/notifications/read", {"all": True}).json()
    assert everything | {"changed_ids": [], "up_to_seq": 4, "unread": 0} == everything
    assert reader.get("/me/unread-count").json()["unread"] == 0


@pytest.mark.parametrize(
    "payload", [{}, {"ids": []}, {"ids": [1], "all": True}, {"all": False}, {"all": "yes"}, {"ids": [0]}, {"ids": list(range(1, 1002))}]
)
def test_mark_read_bad_input_is_422(reader: Api, payload: Any) -> None:
    assert_error(reader.post("/me/notifications/read", payload), 422, "invalid")


# --- topics and subscriptions ---------------------------------------------------------


def test_topics_lists_public_and_my_private_ones(reader: Api, user: Any) -> None:
    Topic.objects.create(slug="open", title="Open")
    Topic.objects.create(slug="hidden", title="Hidden", public=False)
    mine = Topic.objects.create(slug="staff", title="Staff", public=False)
    Subscription.objects.create(user=user, topic=mine)
    topics = reader.get("/topics").json()
    assert [(t["slug"], t["subscribed"]) for t in topics] == [("open", False), ("staff", True)]


def test_subscribe_list_unsubscribe(reader: Api, user: Any) -> None:
    Topic.objects.create(slug="open", title="Open")
    Topic.objects.create(slug="hidden", title="Hidden", public=False)
    assert reader.get("/me/subscriptions").json() == []
    r = reader.post("/me/subscriptions", {"topic": "open"})
    assert r.status_code == 201 and r.json()["topic"] == "open" and r.json()["muted"] is False
    assert reader.post("/me/subscriptions", {"topic": "open"}).status_code == 201  # idempotent
    assert [s["topic"] for s in reader.get("/me/subscriptions").json()] == ["open"]
    assert_error(reader.post("/me/subscriptions", {"topic": "hidden"}), 404, "not_found")
    assert_error(reader.post("/me/subscriptions", {"topic": "missing"}), 404, "not_found")
    assert_error(reader.post("/me/subscriptions", {"topic": "not a slug"}), 422, "invalid")
    r = reader.delete("/me/subscriptions/open")
    assert r.status_code == 204 and r.content == b""
    assert_error(reader.delete("/me/subscriptions/open"), 404, "not_found")
    assert_error(reader.delete("/me/subscriptions/bad%20slug"), 422, "invalid")
    assert Subscription.objects.filter(user=user).count() == 0


# --- WebSocket ticket -----------------------------------------------------------------


def test_ws_ticket_is_single_use(reader: Api, user: Any) -> None:
    r = reader.post("/ws-ticket")
    assert r.status_code == 201
    body = r.json()
    assert body["expires_in"] == 60 and len(body["ticket"]) >= 32
    redeemed = auth.redeem_ticket(body["ticket"])
    assert redeemed is not None and redeemed.user == user
    assert auth.redeem_ticket(body["ticket"]) is None
