"""The dashboard's views through Django's test client: pages, JSON endpoints, POST-only changes."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from notifications import ops, presence, services
from notifications.models import Notification, Subscription, Topic

pytestmark = pytest.mark.django_db


def send(user: Any, title: str = "hello", **extra: Any) -> int:
    """Stored as written, below the edges' rules: the page must be safe with rows written any way."""
    return services.notify(recipient_ids=[user.id], content=services.Content.trusted(title=title, **extra)).deliveries[0].id


def logged_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def client_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script id="notify-config" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page carries the client's initial state"
    return dict(json.loads(match.group(1)))


def test_pages_need_a_login(client: Client) -> None:
    for path in ["/inbox/", "/topics/", "/compose/", "/ops/", "/inbox/items", "/ops/data"]:
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), path
    assert client.get("/")["Location"] == "/login/"


def test_login_form_logs_in_and_lands_on_the_inbox(client: Client, user: Any) -> None:
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 302 and response["Location"] == "/inbox/"
    assert client.get("/")["Location"] == "/inbox/"


def test_logout_is_post_only(client: Client, user: Any) -> None:
    logged_in(client, user)
    assert client.get("/logout/").status_code == 405
    assert client.get("/inbox/").status_code == 200
    assert client.post("/logout/")["Location"] == "/login/"
    assert client.get("/inbox/").status_code == 302


def test_inbox_renders_newest_first_with_the_state_to_connect_from(client: Client, user: Any, make_user: Any) -> None:
    send(make_user(), "someone else's")
    for i in range(3):
        send(user, f"n{i}")
    response = logged_in(client, user).get("/inbox/")
    html = response.content.decode()
    assert [m for m in re.findall(r'data-seq="(\d+)"', html)] == ["3", "2", "1"]
    assert "someone else" not in html
    config = client_config(html)
    assert config["userId"] == user.id and config["headSeq"] == 3 and config["unread"] == 3
    assert config["page"] == "inbox"
    assert 'id="unread-count">3<' in html
    assert 'aria-live="polite"' in html


def test_inbox_escapes_text_and_links_only_safe_urls(client: Client, user: Any) -> None:
    send(user, "<script>alert(1)</script>", body="<b>x</b>", url="javascript:alert(1)")
    send(user, "safe", url="/builds/7")
    html = logged_in(client, user).get("/inbox/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<b>x</b>" not in html
    assert "javascript:" not in html
    assert 'href="/builds/7"' in html


def test_a_stored_url_the_browser_would_take_off_site_is_no_link(client: Client, user: Any) -> None:
    # Written past the edges (services take it as given); the browser drops the tab: "//evil.example/phish".
    send(user, "tabbed", url="/\t/evil.example/phish")
    logged_in(client, user)
    assert "evil.example" not in client.get("/inbox/").content.decode()
    [row] = client.get("/inbox/items").json()["items"]
    assert (row["url"], row["link"]) == ("/\t/evil.example/phish", "")


def test_inbox_filters_by_topic_and_unread(client: Client, user: Any) -> None:
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    Subscription.objects.create(user=user, topic=topic)
    send(user, "plain")
    send(user, "deploy one", topic_id=topic.id)
    read_id = send(user, "deploy read", topic_id=topic.id)
    services.mark_read(user_id=user.id, ids=[read_id])
    logged_in(client, user)
    by_topic = client.get("/inbox/?topic=deploys").content.decode()
    assert "deploy one" in by_topic and "deploy read" in by_topic and "plain" not in by_topic
    unread = client.get("/inbox/?topic=deploys&unread=1").content.decode()
    assert "deploy one" in unread and "deploy read" not in unread
    assert client_config(unread)["filters"] == {"topic": "deploys", "unread": True}


def test_items_endpoint_pages_backwards_and_filters(client: Client, user: Any) -> None:
    for i in range(5):
        send(user, f"n{i}")
    logged_in(client, user)
    page = client.get("/inbox/items?limit=2").json()
    assert [n["seq"] for n in page["items"]] == [5, 4] and page["more"] is True
    assert page["head_seq"] == 5 and page["unread"] == 5
    older = client.get("/inbox/items?limit=2&before=4").json()
    assert [n["seq"] for n in older["items"]] == [3, 2]
    assert set(page["items"][0]) >= {"id", "seq", "title", "body", "url", "link", "topic", "level", "created_at", "read"}
    assert client.get("/inbox/items?before=x").status_code == 400


def test_mark_read_by_form_and_by_fetch(client: Client, user: Any, make_user: Any) -> None:
    first, second, third = send(user, "a"), send(user, "b"), send(user, "c")
    other = send(make_user(), "not yours")
    logged_in(client, user)
    assert client.get("/inbox/read").status_code == 405
    response = client.post("/inbox/read", {"id": [first, other], "next": "/inbox/?unread=1"})
    assert response.status_code == 302 and response["Location"] == "/inbox/?unread=1"
    assert not Notification.objects.filter(id=other, read_at__isnull=False).exists()
    answer = client.post("/inbox/read", {"id": [second]}, HTTP_ACCEPT="application/json").json()
    assert answer == {"ids": [second], "up_to_seq": None, "unread": 1}
    answer = client.post("/inbox/read", {"all": "1"}, HTTP_ACCEPT="application/json").json()
    assert answer["unread"] == 0 and answer["up_to_seq"] == 5  # the head: seqs 4 and 5 are the two read marks' events
    assert Notification.objects.get(id=third).read_at is not None
    evil_next = client.post("/inbox/read", {"all": "1", "next": "https://evil.example/"})
    assert evil_next["Location"] == "/inbox/"


def test_changes_need_the_csrf_token(user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    nid = send(user)
    assert client.post("/inbox/read", {"id": [nid]}).status_code == 403
    assert client.post("/topics/", {"topic": "x", "action": "subscribe"}).status_code == 403
    assert client.post("/logout/").status_code == 403


def test_topics_subscribe_and_unsubscribe(client: Client, user: Any) -> None:
    Topic.objects.create(slug="deploys", title="Deploys")
    Topic.objects.create(slug="secret", title="Secret", public=False)
    logged_in(client, user)
    html = client.get("/topics/").content.decode()
    assert "Deploys" in html and "Secret" not in html
    client.post("/topics/", {"topic": "deploys", "action": "subscribe"})
    assert Subscription.objects.filter(user=user, topic__slug="deploys").exists()
    assert "Unsubscribe" in client.get("/topics/").content.decode()
    client.post("/topics/", {"topic": "secret", "action": "subscribe"})
    assert not Subscription.objects.filter(user=user, topic__slug="secret").exists()
    client.post("/topics/", {"topic": "deploys", "action": "unsubscribe"})
    assert not Subscription.objects.filter(user=user).exists()


def test_compose_and_ops_are_for_staff(client: Client, user: Any) -> None:
    logged_in(client, user)
    for path in ["/compose/", "/ops/", "/ops/data"]:
        assert client.get(path).status_code == 403, path
    assert client.post("/compose/", {"audience": "everyone", "title": "x", "level": "info"}).status_code == 403
    assert Notification.objects.count() == 0
    assert "/compose/" not in client.get("/inbox/").content.decode()


def test_staff_composes_to_users_a_topic_and_everyone(client: Client, make_user: Any) -> None:
    staff = make_user("boss", is_staff=True)
    alice, bob = make_user("alice"), make_user("bob")
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    Subscription.objects.create(user=bob, topic=topic)
    logged_in(client, staff)
    assert client.get("/compose/").status_code == 200

    response = client.post("/compose/", {"audience": "users", "usernames": "alice", "title": "hi", "level": "info"}, follow=True)
    assert "Sent to 1 recipient." in response.content.decode()
    client.post("/compose/", {"audience": "topic", "topic": "deploys", "title": "v3", "level": "success"})
    client.post("/compose/", {"audience": "everyone", "title": "all hands", "level": "warning"})
    assert sorted(Notification.objects.filter(recipient=alice).values_list("title", flat=True)) == ["all hands", "hi"]
    assert sorted(Notification.objects.filter(recipient=bob).values_list("title", flat=True)) == ["all hands", "v3"]
    assert Notification.objects.get(recipient=bob, title="v3").actor_id == staff.id

    bad = client.post("/compose/", {"audience": "users", "usernames": "nobody", "title": "x", "url": "javascript:x", "level": "info"})
    assert bad.status_code == 200
    assert "No such user: nobody" in bad.content.decode() and "Only http(s)" in bad.content.decode()


@pytest.mark.parametrize("url", ["/\t/evil.example/phish", "/\n/evil.example", "/\\evil.example", "//evil.example"])
def test_compose_refuses_a_url_the_browser_would_take_off_site(client: Client, make_user: Any, url: str) -> None:
    make_user("alice")
    logged_in(client, make_user("boss", is_staff=True))
    response = client.post("/compose/", {"audience": "users", "usernames": "alice", "title": "x", "url": url, "level": "info"})
    assert response.status_code == 200 and "Only http(s)" in response.content.decode()
    assert not Notification.objects.exists()


def test_compose_to_an_inactive_user_is_refused(client: Client, make_user: Any) -> None:
    make_user("gone", is_active=False)
    logged_in(client, make_user("boss", is_staff=True))
    response = client.post("/compose/", {"audience": "users", "usernames": "gone", "title": "x", "level": "info"})
    assert "No such user: gone" in response.content.decode()
    assert not Notification.objects.exists()


def test_ops_data_reports_the_figures(client: Client, make_user: Any) -> None:
    staff = make_user("boss", is_staff=True)
    send(staff, "pending")
    data = logged_in(client, staff).get("/ops/data").json()
    assert set(data) == {
        "at", "nodes", "connections", "notifications_per_second", "pushes_per_second",
        "pushes_sent_total", "unacked", "oldest_unacked_age_s",
        "worker_due", "worker_running", "worker_last_finished_age_s", "worker_failed_last_hour",
    }  # fmt: skip
    assert data["unacked"] == 1 and data["oldest_unacked_age_s"] >= 0
    assert data["notifications_per_second"] == pytest.approx(1 / ops.RATE_WINDOW_SECONDS)
    assert client.get("/ops/").status_code == 200


def test_push_rate_from_successive_node_reports() -> None:
    rate = ops.PushRate()
    assert rate.update([presence.NodeReport("a", 100.0, 1, 50)]) == 0
    assert rate.update([presence.NodeReport("a", 105.0, 1, 100)]) == 10
    # The same report again changes nothing; a restarted node (counter back to 0) is no negative rate.
    assert rate.update([presence.NodeReport("a", 105.0, 1, 100)]) == 10
    assert rate.update([presence.NodeReport("a", 110.0, 1, 0), presence.NodeReport("b", 110.0, 1, 7)]) == 0
    assert rate.update([presence.NodeReport("b", 112.0, 1, 27)]) == 10


def test_mark_all_read_is_the_main_action_only_with_something_unread(client: Client, user: Any) -> None:
    logged_in(client, user)
    button = re.compile(r'<button type="submit" id="read-all" class="([^"]*)"( disabled)?>Mark all read</button>')
    match = button.search(client.get("/inbox/").content.decode())
    assert match and match.groups() == ("button secondary", " disabled")
    send(user)
    match = button.search(client.get("/inbox/").content.decode())
    assert match and match.groups() == ("button", None)


def test_every_page_has_an_icon_and_favicon_ico_leads_to_it(client: Client, user: Any) -> None:
    html = logged_in(client, user).get("/inbox/").content.decode()
    assert '<link rel="icon" href="/static/notifications/favicon.svg" type="image/svg+xml">' in html
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == "/static/notifications/favicon.svg"


def test_compose_labels_the_url_field_as_a_link(client: Client, make_user: Any) -> None:
    html = logged_in(client, make_user("boss", is_staff=True)).get("/compose/").content.decode()
    assert re.search(r"<label[^>]*>Link \(URL\)", html) and ">Url<" not in html and ">Url:<" not in html


def test_ops_shows_the_away_worker_from_the_task_engines_table(client: Client, make_user: Any) -> None:
    staff = logged_in(client, make_user("boss", is_staff=True))
    data = staff.get("/ops/data").json()
    assert (data["worker_due"], data["worker_running"], data["worker_last_finished_age_s"], data["worker_failed_last_hour"]) == (
        0,
        0,
        None,
        0,
    )
    assert "never" in staff.get("/ops/").content.decode()

    now = timezone.now()

    def row(status: str, **extra: Any) -> None:
        fields = {"run_after": now, "args_kwargs": {"args": ["email"], "kwargs": {}}, "task_path": "notifications.tasks.deliver_due"}
        DBTaskResult.objects.create(status=status, backend_name="default", queue_name="away", **{**fields, **extra})

    row("READY", run_after=now - timedelta(seconds=30))  # overdue: no worker took it
    row("READY", run_after=now + timedelta(hours=1))  # not due yet: no backlog
    row("RUNNING")
    row("SUCCESSFUL", finished_at=now - timedelta(seconds=12))
    row("FAILED", finished_at=now - timedelta(minutes=5))
    row("FAILED", finished_at=now - timedelta(hours=2))  # outside the hour
    data = staff.get("/ops/data").json()
    assert (data["worker_due"], data["worker_running"], data["worker_failed_last_hour"]) == (1, 1, 1)
    assert 4 <= data["worker_last_finished_age_s"] < 60  # the newer of the finished: the failure 5 min ago is older
