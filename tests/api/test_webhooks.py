"""POST/GET/DELETE /api/v1/webhook-endpoints: the `webhooks` scope, the secret shown once, the URL rule at create."""

from __future__ import annotations

from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from notifications.models import WebhookEndpoint, WebhookMessage
from tests.api.conftest import Api, assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

PUBLIC = "https://93.184.215.14/hooks"  # a public address: no DNS needed


@pytest.fixture
def hooks(make_user: Any, token_for: Any) -> Api:
    return Api(token_for(make_user("app-backend"), ("webhooks",)))


def test_the_secret_is_in_the_create_answer_only(hooks: Api) -> None:
    response = hooks.post("/webhook-endpoints", {"url": PUBLIC, "events": ["notification.action", "notification.delivered"]})
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["url"] == PUBLIC and created["events"] == ["notification.action", "notification.delivered"]
    assert created["secret"].startswith("whsec_") and created["disabled"] is False
    Webhook(created["secret"])  # the receivers' library takes it as it is
    listed = hooks.get("/webhook-endpoints").json()["endpoints"]
    one = hooks.get(f"/webhook-endpoints/{created['id']}").json()
    assert listed == [one] and one == {k: v for k, v in created.items() if k != "secret"}
    assert created["secret"] not in hooks.get("/webhook-endpoints").content.decode()


def test_each_endpoint_has_its_own_secret(hooks: Api) -> None:
    secrets = {hooks.post("/webhook-endpoints", {"url": PUBLIC, "events": ["notification.action"]}).json()["secret"] for _ in range(3)}
    assert len(secrets) == 3


def test_only_a_token_with_the_webhooks_scope(make_user: Any, token_for: Any, client: Any) -> None:
    body = {"url": PUBLIC, "events": ["notification.action"]}
    other = Api(token_for(make_user("publisher"), ("publish", "read", "users", "critical")))
    assert_error(other.post("/webhook-endpoints", body), 403, "insufficient_scope")
    assert_error(other.get("/webhook-endpoints"), 403, "insufficient_scope")
    assert_error(Api().post("/webhook-endpoints", body), 401, "unauthenticated")
    staff = make_user("staff", is_staff=True, is_superuser=True)
    client.force_login(staff)
    assert_error(Api(client=client).get("/webhook-endpoints"), 401, "unauthenticated")  # a session is not enough
    assert not WebhookEndpoint.objects.exists()


def test_delete_removes_it_from_the_api_and_cancels_what_waits(hooks: Api, user: Any) -> None:
    from django.db import transaction

    from notifications.services import webhooks

    created = hooks.post("/webhook-endpoints", {"url": PUBLIC, "events": ["notification.action"]}).json()
    with transaction.atomic():
        webhooks.emit("notification.action", {"action": "approve"}, user_id=user.id)
    assert hooks.delete(f"/webhook-endpoints/{created['id']}").status_code == 204
    assert hooks.get("/webhook-endpoints").json() == {"endpoints": []}
    assert_error(hooks.get(f"/webhook-endpoints/{created['id']}"), 404, "not_found")
    assert_error(hooks.delete(f"/webhook-endpoints/{created['id']}"), 404, "not_found")
    assert WebhookMessage.objects.get().state == WebhookMessage.State.CANCELLED
    assert WebhookEndpoint.objects.get().removed_at is not None, "the row stays for its attempt log"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": PUBLIC, "events": []}, "events"),
        ({"url": PUBLIC, "events": ["notification.nope"]}, "events.0"),
        ({"url": PUBLIC}, "events"),
        ({"events": ["notification.action"]}, "url"),
        ({"url": "", "events": ["notification.action"]}, "url"),
        ({"url": "https://93.184.215.14/a\x00b", "events": ["notification.action"]}, "url"),
        ({"url": PUBLIC, "events": ["notification.action"], "secret": "whsec_mine"}, "secret"),
        ({"url": "http://93.184.215.14/hooks", "events": ["notification.action"]}, "url"),
        ({"url": "https://127.0.0.1:8443/hooks", "events": ["notification.action"]}, "url"),
        ({"url": "https://localhost/hooks", "events": ["notification.action"]}, "url"),
        ({"url": "https://10.0.0.7/hooks", "events": ["notification.action"]}, "url"),
        ({"url": "https://169.254.169.254/latest/meta-data", "events": ["notification.action"]}, "url"),
        ({"url": "https://user:pw@93.184.215.14/hooks", "events": ["notification.action"]}, "url"),
        ({"url": "https://2130706433/hooks", "events": ["notification.action"]}, "url"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(hooks: Api, body: dict[str, Any], field: str) -> None:
    answer = assert_error(hooks.post("/webhook-endpoints", body), 422, "invalid")
    assert field in answer["fields"], answer
    assert not WebhookEndpoint.objects.exists()


def test_private_urls_are_taken_with_the_setting(hooks: Api, settings: Any) -> None:
    settings.WEBHOOKS = {"ALLOW_PRIVATE": True}
    for url in ("https://127.0.0.1:8443/hooks", "http://localhost:9000/hooks", "https://10.0.0.7/hooks"):
        assert hooks.post("/webhook-endpoints", {"url": url, "events": ["notification.read"]}).status_code == 201
    assert_error(hooks.post("/webhook-endpoints", {"url": "https://169.254.169.254/", "events": ["notification.read"]}), 422, "invalid")


def test_a_cap_on_endpoints(hooks: Api) -> None:
    from notifications.services.webhooks import MAX_ENDPOINTS

    WebhookEndpoint.objects.bulk_create([WebhookEndpoint(url=PUBLIC, events=["notification.action"]) for _ in range(MAX_ENDPOINTS - 1)])
    assert hooks.post("/webhook-endpoints", {"url": PUBLIC, "events": ["notification.action"]}).status_code == 201
    assert_error(hooks.post("/webhook-endpoints", {"url": PUBLIC, "events": ["notification.action"]}), 409, "too_many_endpoints")
