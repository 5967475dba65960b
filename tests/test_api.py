"""HTTP API v1 in process (Django test client) on the real database: every endpoint and every error path."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from notifications import auth, selectors, services
from notifications.models import Notification, Subscription, Topic

pytestmark = pytest.mark.django_db

# A publish's write: one statement on PostgreSQL; lock, advance and insert elsewhere.
WRITE_STATEMENTS = 1 if connection.vendor == "postgresql" else 3

API = "/api/v1"


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    # make_user hashes a password; PBKDF2 would dominate these tests' time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class Api:
    """A test client that speaks JSON with a Bearer token."""

    def __init__(self, token: str | None = None, client: Client | None = None) -> None:
        self.client = client or Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(API + path, params, headers=self.headers)

    def post(self, path: str, body: Any = None, *, key: str | None = None, raw: str | None = None) -> Any:
        headers = {**self.headers, **({"Idempotency-Key": key} if key else {})}
        data = raw if raw is not None else body if body is not None else {}
        return self.client.post(API + path, data, content_type="application/json", headers=headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(API + path, headers=self.headers)


@pytest.fixture
def publisher(make_user: Any, token_for: Any) -> Api:
    return Api(token_for(make_user("publisher-svc"), ("publish",)))


@pytest.fixture
def reader(user: Any, token_for: Any) -> Api:
    return Api(token_for(user, ("read",)))


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["fields"], dict)
    return body


# --- publish ------------------------------------------------------------------------


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
        ({"users": [999_999_999], "title": "x"}, "unknown_recipient", None),
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
        ({"users": [1], "title": "x", "url": "javascript:alert(1)"}, "url"),
        ({"users": [1], "title": "x", "url": "//evil.example/"}, "url"),
        ({"users": [1], "title": "x", "url": "/\\evil.example/"}, "url"),
        ({"users": [1], "title": "x", "url": "https://"}, "url"),
        ({"users": [1], "title": "x", "level": "critical"}, "level"),
        ({"users": [1], "title": "x", "kind": "has space"}, "kind"),
        ({"users": [1], "title": "x", "expires_at": "2001-01-01T00:00:00Z"}, "body"),
        ({"users": [1], "title": "x", "colour": "red"}, "colour"),
        ({"users": [True], "title": "x"}, "users.0"),
        ({"users": list(range(1, 1002)), "title": "x"}, "users"),
        ({"title": "x"}, "body"),
        ({"users": [1], "topic": "news", "title": "x"}, "body"),
        ({"topic": "bad slug!", "title": "x"}, "topic"),
    ],
)
def test_bad_publish_input_is_422_with_field_errors(publisher: Api, payload: Any, field: str) -> None:
    body = assert_error(publisher.post("/notifications", payload), 422, "invalid")
    assert any(k == field or k.startswith(field + ".") for k in body["fields"]), body["fields"]
    assert Notification.objects.count() == 0


@pytest.mark.parametrize("raw", ["{not json", '{"users": [1], "title": "x", "data": {"n": NaN}}', '{"users": [1], "title": "\\ud800"}'])
def test_unparseable_body_is_400(publisher: Api, raw: str) -> None:
    assert_error(publisher.post("/notifications", raw=raw), 400, "bad_request")


@pytest.mark.parametrize("key", ["has space", "x" * 129, "naïve"])
def test_bad_idempotency_key_is_422(publisher: Api, user: Any, key: str) -> None:
    headers = {**publisher.headers, "Idempotency-Key": key}
    r = publisher.client.post(API + "/notifications", {"users": [user.id], "title": "x"}, content_type="application/json", headers=headers)
    assert_error(r, 422, "invalid")


def test_oversized_body_is_413(publisher: Api, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert_error(publisher.post("/notifications", {"users": [1], "title": "x", "body": "y" * 2000}), 413, "too_large")


# --- batch --------------------------------------------------------------------------


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


# --- auth ---------------------------------------------------------------------------


def test_no_credentials_is_401_json(user: Any) -> None:
    for r in (Api().get("/me/notifications"), Api().post("/notifications", {"users": [user.id], "title": "x"})):
        assert_error(r, 401, "unauthenticated")
        assert r["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer ntf_nope_nope", "Bearer ", "Basic dXNlcjpwdw==", "ntf_just_the_token"])
def test_bad_authorization_is_401(header: str) -> None:
    r = Client().get(API + "/me/unread-count", headers={"Authorization": header})
    assert_error(r, 401, "unauthenticated")


def test_revoked_token_is_401(user: Any) -> None:
    issued = auth.issue_token(user=user, scopes=["read"])
    assert Api(issued.secret).get("/me/unread-count").status_code == 200
    auth.revoke_token(issued.token)
    assert_error(Api(issued.secret).get("/me/unread-count"), 401, "unauthenticated")


def test_inactive_users_token_is_401(user: Any, token_for: Any) -> None:
    api = Api(token_for(user))
    user.is_active = False
    user.save()
    assert_error(api.get("/me/unread-count"), 401, "unauthenticated")


def test_scopes_are_enforced_with_403(user: Any, token_for: Any) -> None:
    read_only = Api(token_for(user, ("read",)))
    publish_only = Api(token_for(user, ("publish",)))
    assert_error(read_only.post("/notifications", {"users": [user.id], "title": "x"}), 403, "insufficient_scope")
    assert_error(read_only.post("/notifications/batch", {"notifications": [{"users": [user.id], "title": "x"}]}), 403, "insufficient_scope")
    for path in ("/me/notifications", "/me/unread-count", "/topics", "/me/subscriptions"):
        assert_error(publish_only.get(path), 403, "insufficient_scope")
    assert_error(publish_only.post("/ws-ticket"), 403, "insufficient_scope")


def test_session_reads_and_needs_csrf_for_writes(user: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get(API + "/me/unread-count").json() == {"unread": 0, "head_seq": 0}
    r = browser.post(API + "/me/notifications/read", {"all": True}, content_type="application/json")
    assert_error(r, 403, "csrf_failed")
    browser.get(API + "/docs")  # the docs page sets the CSRF cookie, so "Try it out" works with a session
    token = browser.cookies["csrftoken"].value
    r = browser.post(API + "/me/notifications/read", {"all": True}, content_type="application/json", headers={"X-CSRFToken": token})
    assert r.status_code == 200


def test_session_publish_needs_staff(user: Any, make_user: Any) -> None:
    browser = Client()
    browser.force_login(user)
    payload = {"users": [user.id], "title": "x"}
    assert_error(browser.post(API + "/notifications", payload, content_type="application/json"), 403, "forbidden")
    staff = Client()
    staff.force_login(make_user(is_staff=True))
    assert staff.post(API + "/notifications", payload, content_type="application/json").status_code == 201


def test_a_token_is_never_logged(user: Any, caplog: Any, settings: Any) -> None:
    settings.DEBUG = True  # ninja's own bearer class logs an unexpected header under DEBUG
    secret = auth.issue_token(user=user, scopes=["read"]).secret
    caplog.set_level(logging.DEBUG)
    for header in (f"Token {secret}", f"Bearer {secret}x", f"Bearer {secret}"):
        Client().get(API + "/me/unread-count", headers={"Authorization": header})
    Client().post(API + "/notifications", {"title": 1}, content_type="application/json", headers={"Authorization": f"Bearer {secret}"})
    assert secret not in caplog.text
    assert secret[:20] not in caplog.text


# --- inbox ----------------------------------------------------------------------------


def _notify(user: Any, n: int, **extra: Any) -> list[services.Delivery]:
    return [services.notify(recipient_ids=[user.id], content=services.Content(title=f"n{i}", **extra)).deliveries[0] for i in range(n)]


def test_inbox_pages_newest_first_with_before(reader: Api, user: Any) -> None:
    _notify(user, 5)
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
    }


def test_inbox_catches_up_oldest_first_with_since(reader: Api, user: Any) -> None:
    _notify(user, 5)
    page = reader.get("/me/notifications", since=1, limit=3).json()
    assert [n["seq"] for n in page["items"]] == [2, 3, 4] and page["next_since"] == 4 and page["next_before"] is None
    page = reader.get("/me/notifications", since=4, limit=3).json()
    assert [n["seq"] for n in page["items"]] == [5] and page["next_since"] is None
    page = reader.get("/me/notifications", since=1, before=4).json()
    assert [n["seq"] for n in page["items"]] == [2, 3]


def test_inbox_filters_unread_and_topic_and_hides_expired(reader: Api, user: Any) -> None:
    topic = Topic.objects.create(slug="ci", title="CI")
    first = _notify(user, 2)
    services.notify(recipient_ids=[user.id], content=services.Content(title="ci", topic_id=topic.id))
    services.notify(recipient_ids=[user.id], content=services.Content(title="gone", expires_at=timezone.now() - timedelta(seconds=1)))
    services.mark_read(user_id=user.id, ids=[first[0].id])
    assert [n["title"] for n in reader.get("/me/notifications").json()["items"]] == ["ci", "n1", "n0"]
    assert [n["title"] for n in reader.get("/me/notifications", unread="true").json()["items"]] == ["ci", "n1"]
    items = reader.get("/me/notifications", topic="ci").json()["items"]
    assert [(n["title"], n["topic"]) for n in items] == [("ci", "ci")]


def test_inbox_shows_only_my_notifications(reader: Api, user: Any, make_user: Any) -> None:
    _notify(make_user(), 3)
    page = reader.get("/me/notifications").json()
    assert page["items"] == [] and page["head_seq"] == 0


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"since": -1}, {"before": "x"}, {"topic": "no spaces"}, {"unread": "maybe"}]
)
def test_inbox_bad_query_is_422(reader: Api, params: dict[str, Any]) -> None:
    assert_error(reader.get("/me/notifications", **params), 422, "invalid")


# --- read state -----------------------------------------------------------------------


def test_mark_read_by_ids_and_all(reader: Api, user: Any, make_user: Any) -> None:
    mine = _notify(user, 3)
    theirs = _notify(make_user(), 1)
    r = reader.post("/me/notifications/read", {"ids": [mine[0].id, theirs[0].id]})
    assert r.status_code == 200 and r.json() == {"changed_ids": [mine[0].id], "up_to_seq": None, "unread": 2}
    assert Notification.objects.get(id=theirs[0].id).read_at is None
    assert reader.get("/me/unread-count").json() == {"unread": 2, "head_seq": 3}
    assert reader.post("/me/notifications/read", {"all": True}).json() == {"changed_ids": [], "up_to_seq": 3, "unread": 0}
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
    assert auth.redeem_ticket(body["ticket"]) == user
    assert auth.redeem_ticket(body["ticket"]) is None


# --- health, metrics, schema, unknown routes ------------------------------------------


def test_healthz_and_readyz() -> None:
    assert Client().get("/healthz").json() == {"status": "ok", "checks": {}}
    r = Client().get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"]["database"] == "ok"
    assert r.json()["checks"]["redis"] in {"ok", "not configured"}


def test_readyz_is_503_when_redis_is_unreachable(settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    r = Client().get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert r.json()["checks"]["redis"].startswith("error") and r.json()["checks"]["database"] == "ok"


def test_metrics_in_prometheus_text_format(user: Any) -> None:
    _notify(user, 3)
    Topic.objects.create(slug="t", title="T")
    r = Client().get("/metrics")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.content.decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert (samples["notify_published_total"], samples["notify_unread"], samples["notify_topics"]) == ("3", "3", "1")
    assert "# TYPE notify_connections gauge" in text and "# TYPE notify_pushes_sent_total counter" in text
    assert samples["notify_presence_up"] == "1"


def test_openapi_schema_and_offline_docs_page() -> None:
    schema = Client().get(API + "/openapi.json").json()
    assert {"/api/v1/notifications", "/api/v1/notifications/batch", "/api/v1/me/notifications", "/api/v1/ws-ticket"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["BearerToken"] == {"type": "http", "scheme": "bearer"}
    page = Client().get(API + "/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert Client().get("/static/ninja/swagger-ui-bundle.js").status_code in {200, 404}  # served by the static handler under ASGI


def test_unknown_route_and_wrong_method_are_json(reader: Api) -> None:
    assert_error(reader.get("/nope"), 404, "not_found")
    r = reader.delete("/me/unread-count")
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r["Allow"]


# --- concurrency ----------------------------------------------------------------------


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


def test_an_unexpected_error_is_a_json_500_and_logs_no_token(reader: Api, monkeypatch: Any, caplog: Any) -> None:
    def broken(user_id: int) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "stream_state", broken)
    caplog.set_level(logging.DEBUG)
    r = reader.get("/me/unread-count")
    assert_error(r, 500, "server_error")
    assert "GET /api/v1/me/unread-count" in caplog.text and "RuntimeError" in caplog.text
    assert reader.headers["Authorization"].split()[1] not in caplog.text


def test_queries_do_not_grow_with_recipients_or_page_size(publisher: Api, make_user: Any, django_assert_max_num_queries: Any) -> None:
    users = [make_user() for _ in range(40)]
    reader = Api(auth.issue_token(user=users[0], scopes=["read"]).secret)
    # token (+ last_used_at), usernames, savepoint, earlier keys, the write (PostgreSQL: one statement that locks,
    # advances and inserts), release: 7 for 40 recipients, as for 4 or 4,000. Their first notification also finds
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
