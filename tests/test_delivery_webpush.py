"""Web Push through a real (loopback HTTPS) push service that checks VAPID and decrypts what it gets."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.utils import timezone

from notifications import services
from notifications.delivery.action_links import ActionToken, read_action_token
from notifications.fields import Action
from notifications.management.commands.vapid_keys import new_pair
from notifications.models import AwayDelivery, Channel, Notification, PushSubscription
from tests.api.conftest import Api, assert_error
from tests.away import away_settings
from tests.push_service import PushService, b64e

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture
def push(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[PushService]:
    public, private = new_pair()
    service = PushService(public).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", service.cert)  # trust its self-signed certificate, as for a real one
    settings.AWAY = away_settings(VAPID_PUBLIC_KEY=public, VAPID_PRIVATE_KEY=private, PUSH_ENDPOINT_HOSTS=[service.allowed, *WINDOWS])
    yield service
    service.stop()


WINDOWS = ["*.notify.windows.com"]  # a production default, for the endpoints that must be refused beside it


def subscribe(user: Any, token_for: Any, subscription: dict[str, Any]) -> Any:
    return Api(token_for(user, ("read",))).post("/me/push-subscriptions", subscription)


def pushed() -> services.Report:
    return services.deliver_due(channel=Channel.WEBPUSH, now=timezone.now() + timedelta(seconds=1))


def test_a_due_notification_is_pushed_encrypted_and_signed_once(push: PushService, user: Any, token_for: Any) -> None:
    assert subscribe(user, token_for, push.subscription("phone")).status_code == 201
    assert subscribe(user, token_for, push.subscription("laptop")).status_code == 201
    services.notify(recipient_ids=[user.id], content=services.Content(title="read in time"))
    services.mark_read(user_id=user.id, everything=True, ids=())
    services.notify(recipient_ids=[user.id], content=services.Content(title="third"))
    pushed()
    assert push.errors == []
    got = sorted((r["path"].split("/")[1], r["payload"]["title"]) for r in push.received)
    assert got == [("laptop", "third"), ("phone", "third")], "the read ones are not pushed"
    pushed()
    assert len(push.received) == 2, "at most once"


def test_the_payload_carries_title_url_and_seq(push: PushService, user: Any, token_for: Any) -> None:
    subscribe(user, token_for, push.subscription("phone"))
    delivery = services.notify(recipient_ids=[user.id], content=services.Content(title="Deploy", url="/d/1")).deliveries[0]
    pushed()
    [got] = push.received
    assert got["payload"] == {"id": delivery.id, "seq": delivery.seq, "title": "Deploy", "body": "", "url": "/d/1", "actions": []}
    assert got["topic"] == f"n{delivery.id}"


def test_the_payload_carries_the_actions_as_buttons(push: PushService, user: Any, token_for: Any) -> None:
    """sw.js shows them with showNotification's `actions`: one with a url opens it, one without is an answer."""
    subscribe(user, token_for, push.subscription("phone"))
    long = "https://ci.example/" + "x" * 400  # too long for the payload: its button opens the inbox, never cut
    actions: list[Action] = [
        {"id": "approve", "label": "Approve", "style": "primary"},
        {"id": "logs", "label": "Logs", "style": "secondary", "url": "/logs/1"},
        {"id": "all", "label": "Everything", "style": "secondary", "url": long},
    ]
    services.notify(recipient_ids=[user.id], content=services.Content(title="Deploy?", actions=actions, group_key="d"))
    pushed()
    [got] = push.received
    # An answer carries the signed token sw.js POSTs to answer it (delivery/action_links.py); a link, none.
    token = got["payload"]["actions"][0].pop("token")
    assert read_action_token(token) == ActionToken(user.id, got["payload"]["seq"], "approve")
    assert got["payload"]["actions"] == [
        {"id": "approve", "label": "Approve", "url": ""},
        {"id": "logs", "label": "Logs", "url": "/logs/1"},
        {"id": "all", "label": "Everything", "url": "/inbox/"},
    ]


def test_410_removes_the_subscription(push: PushService, user: Any, token_for: Any) -> None:
    subscribe(user, token_for, push.subscription("gone"))
    services.notify(recipient_ids=[user.id], content=services.Content(title="to a gone browser"))
    pushed()
    assert not PushSubscription.objects.exists()
    assert AwayDelivery.objects.get().state == AwayDelivery.State.SKIPPED


def test_503_is_retried_with_backoff_and_sent_once(push: PushService, user: Any, token_for: Any) -> None:
    subscribe(user, token_for, push.subscription("busy"))
    push.busy_left = 1
    services.notify(recipient_ids=[user.id], content=services.Content(title="later"))
    assert pushed().failures == 1
    assert pushed().sent == 0, "held while backing off"
    services.deliver_due(channel=Channel.WEBPUSH, now=timezone.now() + timedelta(seconds=5))
    assert [r["payload"]["title"] for r in push.received] == ["later"]


def test_an_endpoint_off_the_allow_list_is_refused_with_422(push: PushService, user: Any, token_for: Any) -> None:
    keys = push.subscription("x")["keys"]
    for endpoint in (
        "https://evil.example/push",
        f"http://127.0.0.1:{push.port}/x",
        f"https://user@127.0.0.1:{push.port}/x",
        "ftp://127.0.0.1/",
    ):
        body = assert_error(subscribe(user, token_for, {"endpoint": endpoint, "keys": keys}), 422, "invalid")
        assert "endpoint" in body["fields"]
    assert not PushSubscription.objects.exists()


def test_delete_removes_only_my_subscription(push: PushService, user: Any, make_user: Any, token_for: Any) -> None:
    mine = push.subscription("mine")
    subscribe(user, token_for, mine)
    other = Api(token_for(make_user("mallory"), ("read",)))
    response = other.client.delete(
        "/api/v1/me/push-subscriptions", {"endpoint": mine["endpoint"]}, content_type="application/json", headers=other.headers
    )
    assert_error(response, 404, "not_found")
    me = Api(token_for(user, ("read",)))
    response = me.client.delete(
        "/api/v1/me/push-subscriptions", {"endpoint": mine["endpoint"]}, content_type="application/json", headers=me.headers
    )
    assert response.status_code == 204 and not PushSubscription.objects.exists()


def ok_keys(push: PushService) -> dict[str, str]:
    return dict(push.subscription("x")["keys"])


@pytest.mark.parametrize(
    "endpoint",
    [
        # urllib.parse reads the host as "localhost\\.notify.windows.com"; urllib3 (what requests sends with) as "localhost"
        "https://localhost\\.notify.windows.com/x",
        "https://127.0.0.1\\.notify.windows.com/x",
        "https://a.notify.windows.com/x\\y",
        "https://a.notify.windows.com/x\x00y",  # was a 500
        "https://a.notify.windows.com/x\ty",
        "https://a.notify.windows.com/x y",
        "https://a.notify.windows.com:8443/x",
        "https://u:p@a.notify.windows.com/x",
        "https://127.0.0.1/x",
        "https://2130706433/x",  # 127.0.0.1 to getaddrinfo
        "https://[::1]/x",
        "https://a.notify.windows.com.evil.example/x",
        "https://a.nötify.windows.com/x",
    ],
)
def test_an_endpoint_the_sender_would_read_otherwise_is_refused_with_422(
    push: PushService, user: Any, token_for: Any, endpoint: str
) -> None:
    body = assert_error(subscribe(user, token_for, {"endpoint": endpoint, "keys": ok_keys(push)}), 422, "invalid")
    assert set(body["fields"]) == {"endpoint"}
    assert not PushSubscription.objects.exists()


def test_an_allowed_push_service_on_its_default_port_is_taken(push: PushService, user: Any, token_for: Any) -> None:
    for endpoint in ("https://db5.notify.windows.com/w/?token=a%2Fb", "https://db5.notify.windows.com:443/w/x"):
        assert subscribe(user, token_for, {"endpoint": endpoint, "keys": ok_keys(push)}).status_code == 201


OFF_CURVE = b64e(b"\x04" + b"\x01" * 64)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("p256dh", "===="),  # was 201, then an IndexError in pywebpush took every user's round down
        ("p256dh", "AAAA"),  # was 201, then retried forever
        ("p256dh", OFF_CURVE),
        ("p256dh", b64e(b"\x02" + b"\x01" * 32)),  # a compressed point
        ("p256dh", "A" * 87 + "!"),
        ("auth", "AAAA"),
        ("auth", "A" * 150),  # was a 500: the column holds 100
        ("auth", "===="),
    ],
)
def test_keys_that_cannot_encrypt_are_refused_with_422_naming_the_field(
    push: PushService, user: Any, token_for: Any, field: str, value: str
) -> None:
    subscription = push.subscription("phone")
    subscription["keys"][field] = value
    body = assert_error(subscribe(user, token_for, subscription), 422, "invalid")
    assert set(body["fields"]) == {f"keys.{field}"}
    assert not PushSubscription.objects.exists()


def test_padded_keys_are_taken_and_stored_unpadded(push: PushService, user: Any, token_for: Any) -> None:
    subscription = push.subscription("phone")
    keys = subscription["keys"]
    padded = {k: v + "=" * (-len(v) % 4) for k, v in keys.items()}
    assert padded != keys
    assert subscribe(user, token_for, {**subscription, "keys": padded}).status_code == 201
    stored = PushSubscription.objects.get()
    assert (stored.p256dh, stored.auth) == (keys["p256dh"], keys["auth"])
    services.notify(recipient_ids=[user.id], content=services.Content(title="padded"))
    pushed()
    assert [r["payload"]["title"] for r in push.received] == ["padded"] and push.errors == []


def test_a_subscription_past_the_cap_replaces_the_oldest(push: PushService, user: Any, token_for: Any, settings: Any) -> None:
    settings.AWAY = {**settings.AWAY, "PUSH_MAX_SUBSCRIPTIONS": 3}
    made = [push.subscription(f"d{i}") for i in range(5)]
    for s in made[:3]:
        assert subscribe(user, token_for, s).status_code == 201
    assert subscribe(user, token_for, made[0]).status_code == 201, "the same browser again is not a new one"
    assert sorted(PushSubscription.objects.values_list("endpoint", flat=True)) == sorted(s["endpoint"] for s in made[:3])
    for s in made[3:]:
        assert subscribe(user, token_for, s).status_code == 201
    assert sorted(PushSubscription.objects.values_list("endpoint", flat=True)) == sorted(s["endpoint"] for s in made[2:])


def test_the_payload_url_follows_the_server_link_rule(push: PushService, user: Any, token_for: Any) -> None:
    subscribe(user, token_for, push.subscription("phone"))
    services.notify(recipient_ids=[user.id], content=services.Content(title="old row", url="/ok"))
    # A row written before the rule, or by hand: the email leaves it out, and so does the push now.
    Notification.objects.filter(recipient_id=user.id).update(url="/\t/evil.example")
    pushed()
    [got] = push.received
    assert got["payload"]["url"] == ""


# --- a round: one subscription's trouble is its own ---------------------------------------------


def stored(user: Any, endpoint: str, p256dh: str, auth: str) -> None:
    """A row as it could be stored before the checks (or under an allow-list since changed)."""
    PushSubscription.objects.create(user=user, endpoint=endpoint, p256dh=p256dh, auth=auth)


@pytest.mark.django_db(transaction=True)
def test_broken_subscriptions_are_dropped_and_logged_and_everyone_else_is_pushed_in_the_same_round(
    push: PushService, make_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    good = push.subscription("good")
    users = {name: make_user(name) for name in ("bad_point", "short_key", "sender_reads_localhost", "refused_4xx", "fine")}
    stored(users["bad_point"], push.subscription("x")["endpoint"], "====", good["keys"]["auth"])
    stored(users["short_key"], push.subscription("x")["endpoint"], "AAAA", good["keys"]["auth"])
    stored(users["sender_reads_localhost"], "https://localhost\\.notify.windows.com/x", **good["keys"])
    bad_payload = push.subscription("x")
    push.keys.pop(urlsplit(bad_payload["endpoint"]).path)  # it cannot decrypt: it answers 400
    stored(users["refused_4xx"], bad_payload["endpoint"], **bad_payload["keys"])
    stored(users["fine"], good["endpoint"], **good["keys"])
    # The broken ones first: the fine user is the last of the round.
    for name in users:
        services.notify(recipient_ids=[users[name].id], content=services.Content(title=name))

    report = pushed()

    assert [r["payload"]["title"] for r in push.received] == ["fine"]
    assert report.failures == 0 and report.sent == 1
    assert list(PushSubscription.objects.values_list("user__username", flat=True)) == ["fine"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 4, dropped
    assert AwayDelivery.objects.filter(state=AwayDelivery.State.SKIPPED).count() == 4
    assert pushed().sent == 0, "nothing is retried"


def test_a_subscription_the_allow_list_no_longer_allows_is_dropped_not_called(
    push: PushService, user: Any, token_for: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert subscribe(user, token_for, push.subscription("phone")).status_code == 201
    settings.AWAY = {**settings.AWAY, "PUSH_ENDPOINT_HOSTS": WINDOWS}
    services.notify(recipient_ids=[user.id], content=services.Content(title="not sent"))
    report = pushed()
    assert push.received == [] and push.errors == [] and report.failures == 0
    assert not PushSubscription.objects.exists()
    assert any("dropped, not called" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_slow_devices_of_one_user_hold_up_neither_each_other_nor_another_user(push: PushService, make_user: Any, settings: Any) -> None:
    settings.AWAY = {**settings.AWAY, "PUSH_TIMEOUT_SECONDS": 30}
    slow, quick = make_user("slow"), make_user("quick")
    for _ in range(6):
        stored(slow, **flat(push.subscription("slow")))
    stored(quick, **flat(push.subscription("quick")))
    services.notify(recipient_ids=[slow.id], content=services.Content(title="to the slow ones"))
    services.notify(recipient_ids=[quick.id], content=services.Content(title="to the quick one"))  # after: second in the round
    reports: list[services.Report] = []
    round_ = in_background(lambda: reports.append(pushed()))
    try:
        # All six slow requests are in flight at once, and the quick user's push arrives meanwhile.
        assert push.wait_until(lambda: push.slow_held == 6 and len(push.received) == 1), (push.slow_held, push.received)
        assert [r["payload"]["title"] for r in push.received] == ["to the quick one"]
    finally:
        push.slow_release.set()
        round_.join(30)
    assert reports[0].sent == 2 and len(push.received) == 7


@pytest.mark.django_db(transaction=True)
def test_a_push_service_that_does_not_answer_is_given_up_on_after_the_timeout(push: PushService, user: Any, settings: Any) -> None:
    settings.AWAY = {**settings.AWAY, "PUSH_TIMEOUT_SECONDS": 0.2}
    stored(user, **flat(push.subscription("slow")))
    services.notify(recipient_ids=[user.id], content=services.Content(title="later"))
    reports: list[services.Report] = []
    round_ = in_background(lambda: reports.append(pushed()))
    round_.join(5)  # the old fixed timeout was 10 s; the push service holds it for 30
    try:
        assert not round_.is_alive() and reports[0].failures == 1, "a timeout is transient: backed off, tried again"
    finally:
        push.slow_release.set()
        round_.join(30)


def in_background(work: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        finally:
            connection.close()  # the thread's own

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def flat(subscription: dict[str, Any]) -> dict[str, str]:
    return {"endpoint": subscription["endpoint"], **subscription["keys"]}
