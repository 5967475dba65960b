"""Web Push through a real (loopback HTTPS) push service that checks VAPID and decrypts what it gets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from notifications import services
from notifications.management.commands.vapid_keys import new_pair
from notifications.models import AwayDelivery, Channel, PushSubscription
from tests.api.conftest import Api, assert_error
from tests.away import away_settings
from tests.push_service import PushService

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture
def push(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[PushService]:
    public, private = new_pair()
    service = PushService(public).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", service.cert)  # trust its self-signed certificate, as for a real one
    settings.AWAY = away_settings(VAPID_PUBLIC_KEY=public, VAPID_PRIVATE_KEY=private)
    yield service
    service.stop()


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
    assert got["payload"] == {"id": delivery.id, "seq": delivery.seq, "title": "Deploy", "body": "", "url": "/d/1"}
    assert got["topic"] == f"n{delivery.id}"


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
    for endpoint in ("https://evil.example/push", f"http://127.0.0.1:{push.port}/x", "https://user@127.0.0.1/x", "ftp://127.0.0.1/"):
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
