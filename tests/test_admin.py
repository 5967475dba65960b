"""The admin as the operator's console: every page, permissions, actions through the services, live pushes, bounded queries."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from datetime import time as clock
from typing import Any

import orjson
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from notifications import auth, presence, selectors, services, storage
from notifications.admin import listing
from notifications.fields import Level
from notifications.models import (
    ApiToken,
    AwayDelivery,
    Channel,
    ChannelPreference,
    Notification,
    QuietHours,
    Subscription,
    Topic,
    UserStream,
)  # fmt: skip
from tests.helpers import unread_rows

CHANGELIST = "admin:notifications_notification_changelist"
COMPOSE = "admin:notifications_notification_compose"
FRAME_TIMEOUT = 10.0

pytestmark = pytest.mark.usefixtures("fast_passwords")


def publish(user_ids: list[int], title: str = "hello", **extra: Any) -> list[int]:
    return [d.id for d in services.notify(recipient_ids=user_ids, content=services.Content(title=title, **extra)).deliveries]


def act(client: Client, model: str, action: str, ids: list[int], *, follow: bool = False, **extra: Any) -> Any:
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(i) for i in ids], **extra}
    return client.post(reverse(f"admin:notifications_{model}_changelist"), data, follow=follow)


def messages_of(response: Any) -> str:
    return " ".join(str(m) for m in response.context["messages"])


def staff(make_user: Any, *codenames: str) -> Client:
    user = make_user(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="notifications", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


# --- every page ------------------------------------------------------------------


@pytest.fixture
def console(make_user: Any) -> dict[str, Any]:
    """One of everything the admin shows."""
    alice, bob = make_user("alice"), make_user("bob")
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    subscription = Subscription.objects.create(user=alice, topic=topic)
    ids = publish([alice.id, bob.id], "deployed v2", topic_id=topic.id)
    token = auth.issue_token(user=alice, scopes=["publish"], name="ci").token
    preference = ChannelPreference.objects.create(user=alice, channel=Channel.EMAIL, category="deploys", enabled=False)
    QuietHours.objects.create(user=alice, start=clock(22), end=clock(7), time_zone="Europe/Paris")
    AwayDelivery.objects.create(notification_id=ids[1], channel=Channel.EMAIL, state=AwayDelivery.State.SENT, at=timezone.now())
    return {
        "alice": alice, "bob": bob, "topic": topic, "subscription": subscription, "ids": ids, "token": token, "preference": preference,
    }  # fmt: skip


def admin_pages(c: dict[str, Any]) -> list[str]:
    n = c["ids"][0]
    changelist = reverse(CHANGELIST)
    return [
        reverse("admin:index"),
        reverse("admin:app_list", args=["notifications"]),
        changelist,
        *(
            f"{changelist}?{query}"
            for query in [
                "delivered=no",
                "delivered=yes",
                "read=no",
                "read=yes",
                f"topic__id__exact={c['topic'].id}",
                "topic__isnull=True",
                "level__exact=info",
                "created_at__gte=2000-01-01T00:00:00%2B00:00",
                f"created_at__year={timezone.now().year}",
                f"recipient__id__exact={c['alice'].id}",
                "q=alice",
                "q=deployed",
                "o=3",
            ]
        ),
        reverse("admin:notifications_notification_change", args=[n]),
        reverse("admin:notifications_notification_delete", args=[n]),
        reverse("admin:notifications_notification_history", args=[n]),
        reverse(COMPOSE),
        reverse("admin:notifications_topic_changelist"),
        reverse("admin:notifications_topic_add"),
        reverse("admin:notifications_topic_change", args=[c["topic"].id]),
        reverse("admin:notifications_subscription_changelist"),
        reverse("admin:notifications_subscription_add"),
        reverse("admin:notifications_subscription_change", args=[c["subscription"].id]),
        reverse("admin:notifications_apitoken_changelist"),
        reverse("admin:notifications_apitoken_add"),
        reverse("admin:notifications_apitoken_change", args=[c["token"].id]),
        reverse("admin:notifications_userstream_changelist"),
        reverse("admin:notifications_userstream_change", args=[c["alice"].id]),
        reverse("admin:notifications_awaydelivery_changelist"),
        reverse("admin:notifications_channelpreference_changelist"),
        reverse("admin:notifications_channelpreference_change", args=[c["preference"].id]),
        reverse("admin:notifications_quiethours_changelist"),
        reverse("admin:notifications_quiethours_change", args=[c["alice"].id]),
    ]


@pytest.mark.django_db
def test_every_admin_page_renders_for_a_superuser(admin_client: Client, console: dict[str, Any]) -> None:
    for url in admin_pages(console):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert b"errornote" not in response.content, url


@pytest.mark.django_db
def test_every_admin_page_is_refused_to_a_non_staff_user(client: Client, make_user: Any, console: dict[str, Any]) -> None:
    client.force_login(make_user(is_staff=False))
    for url in admin_pages(console):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


@pytest.mark.django_db
def test_staff_without_permissions_sees_and_does_nothing(make_user: Any, console: dict[str, Any]) -> None:
    client = staff(make_user)
    for url in admin_pages(console)[2:]:  # the index pages render, empty
        assert client.get(url).status_code == 403, url
    for action in ("mark_read", "redeliver", "delete_selected"):
        assert act(client, "notification", action, console["ids"], post="yes").status_code == 403
    assert client.post(reverse(COMPOSE), {"audience": "everyone", "title": "x", "level": "info"}).status_code == 403
    assert b"Deploys" not in client.get(reverse("admin:index")).content
    assert Notification.objects.filter(id__in=console["ids"], read_at__isnull=True).count() == 2
    assert Notification.objects.count() == 2


@pytest.mark.django_db
def test_view_only_staff_sees_the_list_but_no_action_or_compose(make_user: Any, console: dict[str, Any]) -> None:
    client = staff(make_user, "view_notification", "view_apitoken")
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    for hidden in (b"mark_read", b"redeliver", b"delete_selected", b"Compose"):
        assert hidden not in page.content
    act(client, "notification", "mark_read", console["ids"])
    act(client, "notification", "delete_selected", console["ids"], post="yes")
    assert Notification.objects.filter(id__in=console["ids"], read_at__isnull=True).count() == 2
    assert client.get(reverse(COMPOSE)).status_code == 403
    assert client.get(reverse("admin:notifications_notification_delete", args=[console["ids"][0]])).status_code == 403
    assert client.get(reverse("admin:notifications_apitoken_add")).status_code == 403
    act(client, "apitoken", "revoke", [console["token"].id])
    assert ApiToken.objects.get(id=console["token"].id).revoked_at is None


@pytest.mark.django_db
def test_change_permission_allows_read_state_but_not_delete_or_compose(make_user: Any, console: dict[str, Any]) -> None:
    client = staff(make_user, "view_notification", "change_notification")
    act(client, "notification", "delete_selected", console["ids"], post="yes")
    assert Notification.objects.count() == 2
    act(client, "notification", "mark_read", console["ids"])
    assert Notification.objects.filter(read_at__isnull=True).count() == 0
    assert client.get(reverse(COMPOSE)).status_code == 403
    # A published notification's own page is view-only, whatever the permissions.
    page = client.get(reverse("admin:notifications_notification_change", args=[console["ids"][0]]))
    assert page.status_code == 200 and b'name="_save"' not in page.content


# --- notification actions ------------------------------------------------------------


@pytest.mark.django_db
def test_mark_read_and_unread_across_users_keep_every_counter_exact(admin_client: Client, make_user: Any) -> None:
    a, b = make_user(), make_user()
    ids = publish([a.id, b.id], "one") + publish([a.id, b.id], "two")
    act(admin_client, "notification", "mark_read", ids[:3])
    assert [selectors.stream_state(u.id).unread for u in (a, b)] == [unread_rows(a.id), unread_rows(b.id)] == [0, 1]
    act(admin_client, "notification", "mark_unread", ids[:2])
    assert [selectors.stream_state(u.id).unread for u in (a, b)] == [unread_rows(a.id), unread_rows(b.id)] == [1, 2]


@pytest.mark.django_db
def test_delete_action_and_delete_view_go_through_the_service(admin_client: Client, make_user: Any) -> None:
    a, b = make_user(), make_user()
    ids = publish([a.id, b.id], "one") + publish([a.id, b.id], "two")
    services.mark_read(user_id=a.id, ids=[ids[0]])
    confirm = act(admin_client, "notification", "delete_selected", ids[:3])
    assert confirm.status_code == 200 and b"Are you sure" in confirm.content
    act(admin_client, "notification", "delete_selected", ids[:3], post="yes")
    assert list(Notification.objects.values_list("id", flat=True)) == [ids[3]]
    assert selectors.stream_state(a.id).unread == unread_rows(a.id) == 0
    assert selectors.stream_state(b.id).unread == unread_rows(b.id) == 1
    admin_client.post(reverse("admin:notifications_notification_delete", args=[ids[3]]), {"post": "yes"})
    assert not Notification.objects.exists()
    assert selectors.stream_state(b.id).unread == 0


@pytest.mark.django_db
def test_delete_confirmation_names_a_few_and_counts_the_rest(admin_client: Client, make_user: Any) -> None:
    user = make_user()
    ids = [i for n in range(61) for i in publish([user.id], f"n{n}")]
    page = act(admin_client, "notification", "delete_selected", ids)
    assert page.status_code == 200
    assert "… and 11 more".encode() in page.content
    assert Notification.objects.count() == 61


@pytest.mark.django_db
def test_compose_publishes_through_the_services_to_users_a_topic_or_everyone(admin_client: Client, admin_user: Any, make_user: Any) -> None:
    a, b = make_user("ann"), make_user("ben")
    topic = Topic.objects.create(slug="ops", title="Ops")
    Subscription.objects.create(user=b, topic=topic)
    form = {"title": "hi", "body": "there", "url": "/x", "level": "warning"}
    response = admin_client.post(reverse(COMPOSE), {**form, "audience": "users", "usernames": "ann, ben"})
    assert response.status_code == 302 and response["Location"] == reverse(CHANGELIST)
    admin_client.post(reverse(COMPOSE), {**form, "audience": "topic", "topic": "ops"})
    admin_client.post(reverse(COMPOSE), {**form, "audience": "everyone"})
    rows = list(Notification.objects.order_by("id").values_list("recipient_id", "topic_id", "seq", "actor_id", "level"))
    assert rows == [
        (a.id, None, 1, admin_user.id, "warning"), (b.id, None, 1, admin_user.id, "warning"),
        (b.id, topic.id, 2, admin_user.id, "warning"),
        *sorted((uid, None, seq, admin_user.id, "warning") for uid, seq in [(admin_user.id, 1), (a.id, 2), (b.id, 3)]),
    ]  # fmt: skip
    assert selectors.stream_state(b.id).unread == 3


@pytest.mark.django_db
def test_compose_shows_form_errors_and_publishes_nothing(admin_client: Client) -> None:
    response = admin_client.post(reverse(COMPOSE), {"audience": "users", "usernames": "nobody", "title": "x", "level": "info"})
    assert response.status_code == 200
    assert b"No such user: nobody" in response.content
    response = admin_client.post(reverse(COMPOSE), {"audience": "users", "usernames": "admin", "title": "x", "level": "info",
                                                    "url": "javascript:alert(1)"})  # fmt: skip
    assert b"Only http(s) URLs" in response.content
    assert not Notification.objects.exists()


@pytest.mark.django_db
def test_add_notification_is_compose(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:notifications_notification_add") + "?audience=everyone")
    assert response["Location"] == reverse(COMPOSE) + "?audience=everyone"
    assert b'<option value="everyone" selected>' in admin_client.get(response["Location"]).content


@pytest.mark.django_db
def test_actions_refuse_an_oversized_selection(admin_client: Client, make_user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from notifications.admin import notifications as notification_admin

    user = make_user()
    ids = publish([user.id], "a") + publish([user.id], "b")
    monkeypatch.setattr(notification_admin, "ACTION_MAX", 1)
    pushed: list[Any] = []
    monkeypatch.setattr(services, "redeliver", pushed.append)
    for action in ("mark_read", "redeliver", "delete_selected"):
        response = act(admin_client, "notification", action, ids, follow=True, post="yes")
        assert "One action handles at most 1 notifications" in messages_of(response)
    assert pushed == []
    assert Notification.objects.filter(read_at__isnull=True).count() == 2


# --- live sockets ---------------------------------------------------------------------------


@contextmanager
def socket_for(server: Any, token: str) -> Iterator[ClientConnection]:
    with connect(server.ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=FRAME_TIMEOUT) as ws:
        yield ws


def next_frame(ws: ClientConnection, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first frame that matches, skipping heartbeats and the like; fails after FRAME_TIMEOUT."""
    deadline = time.monotonic() + FRAME_TIMEOUT
    while True:
        frame: dict[str, Any] = orjson.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if wanted(frame):
            return frame


def wait_until(check: Callable[[], Any], timeout: float = FRAME_TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
    return result


@pytest.mark.server
def test_redeliver_reaches_a_live_socket(daphne: Any, make_user: Any, token_for: Any, admin_client: Client) -> None:
    user = make_user()
    [first] = publish([user.id], "missed it?")
    with socket_for(daphne, token_for(user)) as ws:
        assert next_frame(ws, lambda f: f["type"] == "welcome")["head_seq"] == 1
        response = act(admin_client, "notification", "redeliver", [first])
        assert response.status_code == 302
        frame = next_frame(ws, lambda f: f["type"] == "notification")
    assert (frame["id"], frame["seq"], frame["title"]) == (first, 1, "missed it?")


@pytest.mark.server
def test_compose_reaches_a_live_socket(daphne: Any, make_user: Any, token_for: Any, admin_client: Client) -> None:
    user = make_user("carol")
    with socket_for(daphne, token_for(user)) as ws:
        next_frame(ws, lambda f: f["type"] == "welcome")
        admin_client.post(reverse(COMPOSE), {"audience": "users", "usernames": "carol", "title": "from the console", "level": "info"})
        frame = next_frame(ws, lambda f: f["type"] == "notification")
    assert (frame["seq"], frame["title"]) == (1, "from the console")


@pytest.mark.server
def test_mark_read_action_reaches_a_live_socket(daphne: Any, make_user: Any, token_for: Any, admin_client: Client) -> None:
    user = make_user()
    ids = publish([user.id], "a") + publish([user.id], "b")
    with socket_for(daphne, token_for(user)) as ws:
        next_frame(ws, lambda f: f["type"] == "welcome")
        act(admin_client, "notification", "mark_read", [ids[0]])
        frame = next_frame(ws, lambda f: f["type"] == "state")
    assert (frame["op"], frame["ids"], frame["unread"]) == ("read", [ids[0]], 1)


@pytest.mark.server
def test_per_user_view_counts_open_connections(daphne: Any, make_user: Any, token_for: Any, admin_client: Client) -> None:
    user = make_user()
    publish([user.id], "hello")
    url = reverse("admin:notifications_userstream_changelist")
    with socket_for(daphne, token_for(user)) as ws, socket_for(daphne, token_for(user)) as ws2:
        for socket in (ws, ws2):
            next_frame(socket, lambda f: f["type"] == "welcome")
        wait_until(lambda: presence.connections_for(user.id) == 2)
        [row] = [s for s in admin_client.get(url).context["cl"].result_list if s.user_id == user.id]
        assert row.connections_now == 2
        page = admin_client.get(reverse("admin:notifications_userstream_change", args=[user.id]))
        assert b'<div class="readonly">2</div>' in page.content


@pytest.mark.server
def test_revoking_a_token_closes_the_sockets_that_use_it(daphne: Any, make_user: Any, admin_client: Client) -> None:
    user = make_user()
    issued = auth.issue_token(user=user, scopes=["read"])
    with socket_for(daphne, issued.secret) as ws:
        next_frame(ws, lambda f: f["type"] == "welcome")
        act(admin_client, "apitoken", "revoke", [issued.token.id])
        with pytest.raises(ConnectionClosed) as closed:
            next_frame(ws, lambda f: False)  # the next heartbeat checks the credential
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


# --- topics, tokens, the per-user view -----------------------------------------------------------


@pytest.mark.django_db
def test_topics_show_subscriber_counts_and_open_compose_for_their_subscribers(admin_client: Client, make_user: Any) -> None:
    deploys, quiet = Topic.objects.create(slug="deploys", title="Deploys"), Topic.objects.create(slug="quiet", title="Quiet")
    users = [make_user() for _ in range(3)]
    for u in users:
        Subscription.objects.create(user=u, topic=deploys)
    Subscription.objects.filter(user=users[0]).update(muted=True)
    page = admin_client.get(reverse("admin:notifications_topic_changelist"))
    counts = {t.slug: (t.subscriber_count, t.muted_count) for t in page.context["cl"].result_list}
    assert counts == {"deploys": (2, 1), "quiet": (0, 0)}

    response = act(admin_client, "topic", "send_to_subscribers", [deploys.id])
    assert response["Location"] == reverse(COMPOSE) + "?audience=topic&topic=deploys"
    compose = admin_client.get(response["Location"])
    assert b'<option value="deploys" selected>' in compose.content
    assert "exactly one topic" in messages_of(act(admin_client, "topic", "send_to_subscribers", [deploys.id, quiet.id], follow=True))


@pytest.mark.django_db
def test_topic_action_needs_the_permission_to_compose(make_user: Any) -> None:
    client = staff(make_user, "view_topic", "change_topic")
    page = client.get(reverse("admin:notifications_topic_changelist"))
    assert page.status_code == 200 and b"send_to_subscribers" not in page.content


@pytest.mark.django_db
def test_issuing_a_token_shows_the_secret_once_then_only_its_prefix(admin_client: Client, make_user: Any) -> None:
    service = make_user("billing")
    response = admin_client.post(
        reverse("admin:notifications_apitoken_add"), {"user": service.id, "name": "billing", "scopes": ["publish", "read"]}
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    secret = response.context["secret"]
    assert secret.encode() in response.content
    token = ApiToken.objects.get()
    assert auth.authenticate_token(secret) == token and token.scopes == ["publish", "read"] and token.name == "billing"
    for url in (reverse("admin:notifications_apitoken_changelist"), reverse("admin:notifications_apitoken_change", args=[token.id])):
        page = admin_client.get(url).content
        assert f"ntf_{token.prefix}_".encode() in page
        assert secret.encode() not in page and token.digest.encode() not in page

    act(admin_client, "apitoken", "revoke", [token.id])
    assert ApiToken.objects.get().revoked_at is not None
    assert auth.authenticate_token(secret) is None


@pytest.mark.django_db
def test_token_without_a_scope_is_not_issued(admin_client: Client, make_user: Any) -> None:
    response = admin_client.post(reverse("admin:notifications_apitoken_add"), {"user": make_user().id, "name": "x"})
    assert response.status_code == 200 and b"errornote" in response.content
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_per_user_view_shows_head_unread_and_undelivered(admin_client: Client, make_user: Any) -> None:
    user = make_user()
    ids = [i for n in range(4) for i in publish([user.id], f"n{n}")]
    services.ack(user_id=user.id, seq=1)
    services.mark_read(user_id=user.id, ids=ids[:2])
    Notification.objects.filter(id=ids[1]).update(created_at=timezone.now() - timedelta(hours=2, minutes=1))
    [row] = admin_client.get(reverse("admin:notifications_userstream_changelist")).context["cl"].result_list
    # The read mark is an event at seq 5: undelivered counts the seqs above the delivered cursor, events too.
    assert (row.head_seq, row.unread, row.undelivered_count, row.connections_now) == (5, 2, 4, 0)
    page = admin_client.get(reverse("admin:notifications_userstream_change", args=[user.id])).content.decode()
    assert "2\xa0hours ago" in page  # the oldest undelivered is seq 2
    assert f"recipient__id__exact={user.id}&amp;delivered=no" in page
    listed = admin_client.get(reverse(CHANGELIST), {"recipient__id__exact": user.id, "delivered": "no"})
    assert sorted(n.id for n in listed.context["cl"].result_list) == ids[1:]


@pytest.mark.django_db
def test_streams_are_read_only(admin_client: Client, make_user: Any) -> None:
    user = make_user()
    publish([user.id])
    assert admin_client.post(reverse("admin:notifications_userstream_delete", args=[user.id]), {"post": "yes"}).status_code == 403
    assert UserStream.objects.filter(user=user).exists()


# --- a big list stays cheap ----------------------------------------------------------------------


def bulk_publish(user_ids: list[int], count: int) -> None:
    """`count` notifications over these users, through the service, in one transaction."""
    per_user = count // len(user_ids)
    levels: list[Level] = ["info", "success", "warning", "error"]
    services.publish_many(
        [services.PublishRequest(user_ids, services.Content(title=f"n{i}", level=levels[i % 4])) for i in range(per_user)]
    )


@pytest.mark.django_db
def test_changelist_queries_are_bounded_with_10000_notifications(
    admin_client: Client, make_user: Any, django_assert_max_num_queries: Any
) -> None:
    users = [make_user() for _ in range(10)]
    topic = Topic.objects.create(slug="t", title="T")
    bulk_publish([u.id for u in users], 10_000)
    assert Notification.objects.count() == 10_000
    url = reverse(CHANGELIST)
    year = timezone.now().year
    for query in ("", "?p=7", "?read=no", "?delivered=no", f"?topic__id__exact={topic.id}", "?level__exact=error",
                  f"?created_at__year={year}", "?q=n12", f"?q={users[3].username}"):  # fmt: skip
        # session, user, count, page of rows, topics for the filter, date range (+ the user for a search)
        with django_assert_max_num_queries(7):
            response = admin_client.get(url + query)
        assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 100
    assert {n.recipient_id for n in response.context["cl"].result_list} == {users[3].id}


@pytest.mark.django_db
def test_unfiltered_list_uses_the_planner_estimate_not_a_count(
    admin_client: Client, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = make_user()
    bulk_publish([user.id], 250)
    monkeypatch.setattr(storage.postgres.PostgresBackend, "estimated_rows", lambda self, model: 5_000_000)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(reverse(CHANGELIST), {"p": 2})
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert b"about 5,000,000 notifications" in page.content and b"results (" not in page.content
    assert [n.seq for n in page.context["cl"].result_list][:2] == [150, 149]


@pytest.mark.django_db
def test_a_filtered_list_counts_only_a_few_pages_ahead(admin_client: Client, make_user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    user = make_user()
    bulk_publish([user.id], 450)
    monkeypatch.setattr(listing, "COUNT_AT_LEAST", 100)
    monkeypatch.setattr(listing, "PAGES_AHEAD", 1)
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(reverse(CHANGELIST), {"read": "no"})
    [count] = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert "LIMIT 201" in count
    assert b"200+ notifications" in page.content and b"200+ results" in page.content
    # Further on, it counts further; the last page is exact again.
    assert b"450 notifications" in admin_client.get(reverse(CHANGELIST), {"read": "no", "p": "4"}).content


@pytest.mark.django_db
def test_date_drill_down_never_scans_for_distinct_dates(admin_client: Client, make_user: Any) -> None:
    user = make_user()
    ids = [i for n in range(4) for i in publish([user.id], f"n{n}")]
    tz = timezone.get_current_timezone()
    for id_, when in zip(ids, [datetime(2024, 3, 5), datetime(2025, 1, 9), datetime(2025, 4, 2), datetime(2025, 4, 20)], strict=True):
        Notification.objects.filter(id=id_).update(created_at=when.replace(tzinfo=tz))
    url = reverse(CHANGELIST)

    def level(query: dict[str, Any]) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url, query)
        sql = " ".join(q["sql"].upper() for q in queries)
        assert "DISTINCT" not in sql and "DATE_TRUNC" not in sql and "STRFTIME" not in sql
        return [c["title"] for c in response.context["cl"].cheap_date_hierarchy["choices"]]

    assert level({}) == ["2024", "2025"]
    assert level({"created_at__year": 2025}) == ["January 2025", "February 2025", "March 2025", "April 2025"]
    days = level({"created_at__year": 2025, "created_at__month": 4})
    assert (days[0], days[-1], len(days)) == ("April 2", "April 20", 19)
    assert level({"created_at__year": 2025, "created_at__month": 4, "created_at__day": 20}) == ["April 20"]
    page = admin_client.get(url, {"created_at__year": 2025, "created_at__month": 4})
    assert sorted(n.id for n in page.context["cl"].result_list) == ids[2:]


@pytest.mark.django_db
def test_search_by_username_or_title(admin_client: Client, make_user: Any) -> None:
    a, b = make_user("dora"), make_user("eve")
    publish([a.id], "invoice paid")
    publish([b.id], "dora mentioned you")
    by_user = admin_client.get(reverse(CHANGELIST), {"q": "dora"}).context["cl"].result_list
    assert [n.recipient_id for n in by_user] == [a.id]
    by_title = admin_client.get(reverse(CHANGELIST), {"q": "mention"}).context["cl"].result_list
    assert [n.title for n in by_title] == ["dora mentioned you"]


@pytest.mark.django_db
def test_the_console_names_users_and_plurals_and_shows_the_users_choices(admin_client: Client, console: dict[str, Any]) -> None:
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert "Away deliveries" in index and "Quiet hours" in index and "Channel preferences" in index
    assert "deliverys" not in index and "hourss" not in index
    prefs = admin_client.get(reverse("admin:notifications_channelpreference_changelist")).content.decode()
    assert "alice" in prefs and "deploys" in prefs
    quiet = admin_client.get(reverse("admin:notifications_quiethours_changelist")).content.decode()
    assert "alice" in quiet and "Europe/Paris" in quiet
    # A user's choice is theirs: the operator sees it, and changes nothing.
    assert admin_client.get(reverse("admin:notifications_channelpreference_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:notifications_channelpreference_change", args=[console["preference"].id]),
        {"user": console["alice"].id, "channel": "email", "category": "deploys", "enabled": "on"},
    )
    assert response.status_code == 403
    console["preference"].refresh_from_db()
    assert console["preference"].enabled is False


@pytest.mark.django_db
def test_a_notifications_page_names_its_recipient_and_says_where_it_was_sent_away(admin_client: Client, console: dict[str, Any]) -> None:
    emailed, kept = Notification.objects.get(id=console["ids"][1]), Notification.objects.get(id=console["ids"][0])
    page = admin_client.get(reverse("admin:notifications_notification_change", args=[emailed.id])).content.decode()
    assert f"#{emailed.seq} to bob: deployed v2" in page
    assert re.search(r"Email sent at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page)
    page = admin_client.get(reverse("admin:notifications_notification_change", args=[kept.id])).content.decode()
    assert f"#{kept.seq} to alice: deployed v2" in page and "Not sent away (yet)" in page
    deliveries = admin_client.get(reverse("admin:notifications_awaydelivery_changelist")).content.decode()
    assert f"#{emailed.seq} to bob: deployed v2" in deliveries
