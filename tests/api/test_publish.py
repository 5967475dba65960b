"""POST /api/v1/notifications and /notifications/batch (notifications/api/publish.py), in process on the real database."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from notifications import auth, selectors, services
from notifications.models import Notification, Subscription, Topic
from tests.api.conftest import API, Api, assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

# A publish's write: two statements on PostgreSQL (lock; advance and insert); lock, advance and insert elsewhere.
WRITE_STATEMENTS = 2 if connection.vendor == "postgresql" else 3


# --- publish --------------------------------------------------------------------------


def test_publish_to_ids_and_usernames_returns_id_and_seq_per_recipient(publisher: Api, make_user: Any) -> None:
    a, b = make_user("ann"), make_user("bob")
    r = publisher.post("/notifications", {"users": [a.id, "bob", "ann"], "title": "Build green", "body": "main #42", "level": "success"})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["created"] is True
    assert sorted((n["recipient"], n["seq"]) for n in body["notifications"]) == sorted([(a.id, 1), (b.id, 1)])
    row = Notification.objects.get(id=body["notifications"][0]["id"])
    assert (row.title, row.body, row.level) == ("Build green", "main #42", "success")
    assert row.actor_id is not None and row.actor_id not in (a.id, b.id)


def test_publish_stores_every_field(publisher: Api, user: Any) -> None:
    expires = (timezone.now() + timedelta(days=1)).isoformat()
    payload = {"users": [user.id], "title": "t", "kind": "build.done", "data": {"n": [1, 2.5, None, {"x": "y"}]}, "url": "/builds/42"}
    r = publisher.post("/notifications", {**payload, "expires_at": expires, "level": "warning"})
    assert r.status_code == 201
    n = Notification.objects.get(recipient=user)
    assert (n.kind, n.data, n.url, n.level, n.expires_at is not None) == ("build.done", payload["data"], "/builds/42", "warning", True)


def test_publish_to_topic_fans_out_to_unmuted_subscribers(publisher: Api, make_user: Any) -> None:
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    users = [make_user() for _ in range(3)]
    for u in users:
        Subscription.objects.create(user=u, topic=topic, muted=u == users[2])
    r = publisher.post("/notifications", {"topic": "deploys", "title": "v2 is out"})
    assert r.status_code == 201
    assert sorted(n["recipient"] for n in r.json()["notifications"]) == sorted(u.id for u in users[:2])
    assert set(Notification.objects.values_list("topic__slug", flat=True)) == {"deploys"}


def test_same_idempotency_key_returns_the_first_result_with_200_and_writes_nothing(publisher: Api, user: Any) -> None:
    first = publisher.post("/notifications", {"users": [user.id], "title": "once"}, key="order-42-shipped")
    again = publisher.post("/notifications", {"users": [user.id], "title": "twice?"}, key="order-42-shipped")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "created": False}
    assert Notification.objects.count() == 1
    assert selectors.stream_state(user.id).head_seq == 1


def test_idempotency_holds_for_old_keys_too(publisher: Api, user: Any) -> None:
    first = publisher.post("/notifications", {"users": [user.id], "title": "once"}, key="k-old")
    Notification.objects.update(created_at=timezone.now() - timedelta(days=60))
    again = publisher.post("/notifications", {"users": [user.id], "title": "once"}, key="k-old")
    assert again.status_code == 200 and again.json()["notifications"] == first.json()["notifications"]


def test_idempotency_for_topic_publishes(publisher: Api, make_user: Any) -> None:
    topic = Topic.objects.create(slug="news", title="News")
    a = make_user()
    Subscription.objects.create(user=a, topic=topic)
    first = publisher.post("/notifications", {"topic": "news", "title": "hi"}, key="news-1")
    Subscription.objects.create(user=make_user(), topic=topic)  # a newcomer does not turn a retry into a new publish
    again = publisher.post("/notifications", {"topic": "news", "title": "hi"}, key="news-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["notifications"] == first.json()["notifications"]
    assert Notification.objects.count() == 1


def test_idempotency_keys_are_per_publisher(make_user: Any, token_for: Any, user: Any) -> None:
    one = Api(token_for(make_user(), ("publish",)))
    two = Api(token_for(make_user(), ("publish",)))
    assert one.post("/notifications", {"users": [user.id], "title": "a"}, key="same").status_code == 201
    assert two.post("/notifications", {"users": [user.id], "title": "b"}, key="same").status_code == 201
    assert Notification.objects.count() == 2


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"users": [999_999_999], "title": "x"}, "unknown_recipient", "users"),
        ({"users": ["ghost"], "title": "x"}, "unknown_recipient", "users"),
        ({"topic": "no-such-topic", "title": "x"}, "unknown_topic", "topic"),
    ],
)
def test_unknown_recipient_or_topic_fails_whole_request(publisher: Api, user: Any, payload: Any, code: str, field: str | None) -> None:
    users = payload.get("users")
    if users:
        payload = {**payload, "users": [user.id, *users]}
    body = assert_error(publisher.post("/notifications", payload), 404, code)
    if field:
        assert field in body["fields"]
    assert Notification.objects.count() == 0
    assert selectors.stream_state(user.id).head_seq == 0


@pytest.mark.parametrize("by", ["username", "id"])
def test_an_inactive_user_is_an_unknown_recipient(publisher: Api, user: Any, make_user: Any, by: str) -> None:
    gone = make_user("gone", is_active=False)  # as in the compose form and `manage.py notify`
    recipient = gone.username if by == "username" else gone.id
    body = assert_error(publisher.post("/notifications", {"users": [user.id, recipient], "title": "x"}), 404, "unknown_recipient")
    assert "users" in body["fields"]
    assert not Notification.objects.exists()


def test_a_topic_publish_skips_inactive_subscribers(publisher: Api, user: Any, make_user: Any) -> None:
    gone = make_user("gone")
    topic = Topic.objects.create(slug="deploys")
    Subscription.objects.create(user=user, topic=topic)
    Subscription.objects.create(user=gone, topic=topic)
    gone.is_active = False
    gone.save()
    body = publisher.post("/notifications", {"topic": "deploys", "title": "x"}).json()
    assert [d["recipient"] for d in body["notifications"]] == [user.id]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"users": [1]}, "title"),
        ({"users": [1], "title": ""}, "title"),
        ({"users": [1], "title": "   "}, "title"),
        ({"users": [1], "title": "x" * 201}, "title"),
        ({"users": [1], "title": "x", "body": "x" * 4001}, "body"),
        ({"users": [1], "title": "nul\x00"}, "title"),
        ({"users": [1], "title": "x", "data": {"blob": "x" * 9000}}, "data"),
        ({"users": [1], "title": "x", "data": {"deep": [[[[[[[[["too deep"]]]]]]]]]}}, "data"),
        ({"users": [1], "title": "x", "data": []}, "data"),
        ({"users": [1], "title": "x", "data": {"n": 1e30}}, "data"),  # jsonb would give it back as an integer past 64 bits
        ({"users": [1], "title": "x", "url": "javascript:alert(1)"}, "url"),
        ({"users": [1], "title": "x", "url": "//evil.example/"}, "url"),
        ({"users": [1], "title": "x", "url": "/\\evil.example/"}, "url"),
        ({"users": [1], "title": "x", "url": "https://"}, "url"),
        ({"users": [1], "title": "x", "url": "/\t/evil.example/phish"}, "url"),  # the browser drops the tab: off-site
        ({"users": [1], "title": "x", "level": "critical"}, "level"),
        ({"users": [1], "title": "x", "kind": "has space"}, "kind"),
        ({"users": [1], "title": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"users": [1], "title": "x", "expires_at": "9999-12-31T23:59:59-23:59"}, "expires_at"),
        ({"users": [1], "title": "x", "colour": "red"}, "colour"),
        ({"users": [True], "title": "x"}, "users.0"),
        ({"users": list(range(1, 1002)), "title": "x"}, "users"),
        ({"title": "x"}, "body"),
        ({"users": [1], "topic": "news", "title": "x"}, "body"),
        ({"topic": "bad slug!", "title": "x"}, "topic"),
        ({"topic": "deploys\n", "title": "x"}, "topic"),
    ],
)
def test_bad_publish_input_is_422_with_field_errors(publisher: Api, payload: Any, field: str) -> None:
    body = assert_error(publisher.post("/notifications", payload), 422, "invalid")
    assert any(k == field or k.startswith(field + ".") for k in body["fields"]), body["fields"]
    assert Notification.objects.count() == 0


@pytest.mark.parametrize("key", ["has space", "x" * 129, "naïve"])
def test_bad_idempotency_key_is_422(publisher: Api, user: Any, key: str) -> None:
    headers = {**publisher.headers, "Idempotency-Key": key}
    r = publisher.client.post(API + "/notifications", {"users": [user.id], "title": "x"}, content_type="application/json", headers=headers)
    assert_error(r, 422, "invalid")


# --- batch ----------------------------------------------------------------------------


def test_batch_publishes_all_in_one_transaction(publisher: Api, make_user: Any) -> None:
    a, b = make_user("ann"), make_user("bob")
    topic = Topic.objects.create(slug="ops", title="Ops")
    Subscription.objects.create(user=b, topic=topic)
    items = [{"users": [a.id], "title": f"n{i}"} for i in range(5)] + [{"topic": "ops", "title": "t"}, {"users": ["bob"], "title": "u"}]
    r = publisher.post("/notifications/batch", {"notifications": items}, key="batch-1")
    assert r.status_code == 201, r.content
    results = r.json()["results"]
    assert [n["seq"] for res in results[:5] for n in res["notifications"]] == [1, 2, 3, 4, 5]
    assert [(n["recipient"], n["seq"]) for n in results[5]["notifications"] + results[6]["notifications"]] == [(b.id, 1), (b.id, 2)]
    again = publisher.post("/notifications/batch", {"notifications": items}, key="batch-1")
    assert again.status_code == 200 and again.json()["results"] == [{**res, "created": False} for res in results]
    assert Notification.objects.count() == 7


def test_batch_with_one_unknown_recipient_writes_nothing(publisher: Api, user: Any) -> None:
    items = [{"users": [user.id], "title": "fine"}] * 3 + [{"users": ["ghost"], "title": "bad"}]
    body = assert_error(publisher.post("/notifications/batch", {"notifications": items}), 404, "unknown_recipient")
    assert "notifications.3.users" in body["fields"]
    items = [{"users": [user.id], "title": "fine"}, {"users": [user.id, 10**12], "title": "bad id"}]
    assert_error(publisher.post("/notifications/batch", {"notifications": items}), 404, "unknown_recipient")
    assert Notification.objects.count() == 0 and selectors.stream_state(user.id).head_seq == 0


def test_batch_size_is_bounded(publisher: Api, user: Any) -> None:
    assert_error(publisher.post("/notifications/batch", {"notifications": []}), 422, "invalid")
    too_many = [{"users": [user.id], "title": "x"}] * 1001
    assert_error(publisher.post("/notifications/batch", {"notifications": too_many}), 422, "invalid")
    body = assert_error(publisher.post("/notifications/batch", {"notifications": [{"users": [user.id]}]}), 422, "invalid")
    assert "notifications.0.title" in body["fields"]


def test_batch_of_a_thousand(publisher: Api, user: Any) -> None:
    items = [{"users": [user.id], "title": f"n{i}"} for i in range(1000)]
    r = publisher.post("/notifications/batch", {"notifications": items})
    assert r.status_code == 201
    assert selectors.stream_state(user.id).head_seq == 1000


# --- concurrency and query counts -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_requests_with_one_key_create_one_notification(make_user: Any, token_for: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the race is decided by PostgreSQL row locks and the unique index")
    recipients = [make_user() for _ in range(3)]
    token = token_for(make_user(), ("publish",))
    start = threading.Barrier(10)
    statuses: list[int] = []
    bodies: list[Any] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            start.wait(timeout=10)
            r = Api(token).post("/notifications", {"users": [u.id for u in recipients], "title": "once"}, key="race-1")
            with lock:
                statuses.append(r.status_code)
                bodies.append(r.json()["notifications"])
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [200] * 9 + [201]
    assert all(b == bodies[0] for b in bodies)
    assert Notification.objects.count() == 3
    for u in recipients:
        assert selectors.stream_state(u.id).head_seq == 1


def test_queries_do_not_grow_with_recipients_or_page_size(publisher: Api, make_user: Any, django_assert_max_num_queries: Any) -> None:
    users = [make_user() for _ in range(40)]
    reader = Api(auth.issue_token(user=users[0], scopes=["read"]).secret)
    # token (+ last_used_at), usernames, savepoint, earlier keys, the write (PostgreSQL: one statement that locks,
    # one that advances and inserts), release: 8 for 40 recipients, as for 4 or 4,000. Their first notification also finds
    # their streams missing, rolls back, creates them and goes again: 14.
    with django_assert_max_num_queries(12 + 2 * WRITE_STATEMENTS):
        r = publisher.post("/notifications", {"users": [u.username for u in users], "title": "all of you"}, key="q-1")
    assert r.status_code == 201
    with django_assert_max_num_queries(6 + WRITE_STATEMENTS):
        r = publisher.post("/notifications", {"users": [u.username for u in users], "title": "all of you"}, key="q-2")
    assert r.status_code == 201
    for i in range(30):
        services.notify(recipient_ids=[users[0].id], content=services.Content(title=f"n{i}"))
    with django_assert_max_num_queries(4):  # token (+ last_used_at once a minute), stream state, one page
        assert len(reader.get("/me/notifications", limit=25).json()["items"]) == 25


def test_batch_reads_each_topics_subscribers_once(publisher: Api, make_user: Any, django_assert_max_num_queries: Any) -> None:
    topic = Topic.objects.create(slug="busy", title="Busy")
    users = [make_user() for _ in range(5)]
    for u in users:
        Subscription.objects.create(user=u, topic=topic)
    items = [{"topic": "busy", "title": f"n{i}"} for i in range(50)]
    with django_assert_max_num_queries(12 + 2 * WRITE_STATEMENTS):  # as for one item (their streams are created on the way)
        r = publisher.post("/notifications/batch", {"notifications": items})
    assert r.status_code == 201
    assert [n["seq"] for n in r.json()["results"][-1]["notifications"]] == [50] * 5
    assert Notification.objects.filter(topic=topic).count() == 250
