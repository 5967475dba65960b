"""The admin's webhook pages: endpoints (never their secret), turn off/on and remove through the services,
the outbox with a retry action, the attempt log view-only."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from notifications.models import ApiToken, WebhookAttempt, WebhookEndpoint, WebhookEvent, WebhookMessage
from notifications.services import webhooks
from tests.test_admin import act, staff

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture
def hooks(make_user: Any) -> dict[str, Any]:
    alice = make_user("alice")
    endpoint = webhooks.create_endpoint(url="https://93.184.215.14/hooks", events=[WebhookEvent.ACTION], created_by=alice)
    with transaction.atomic():
        webhooks.emit(WebhookEvent.ACTION, {"action": "approve"}, user_id=alice.id)
    message = WebhookMessage.objects.get()
    WebhookMessage.objects.filter(pk=message.pk).update(state=WebhookMessage.State.FAILED, attempts=8)
    attempt = WebhookAttempt.objects.create(message=message, at=timezone.now(), status_code=503, duration_ms=12, response="busy")
    return {"endpoint": endpoint, "message": message, "attempt": attempt}


def pages(h: dict[str, Any]) -> list[str]:
    return [
        reverse("admin:notifications_webhookendpoint_changelist"),
        reverse("admin:notifications_webhookendpoint_changelist") + "?disabled__exact=0",
        reverse("admin:notifications_webhookendpoint_change", args=[h["endpoint"].pk]),
        reverse("admin:notifications_webhookmessage_changelist"),
        reverse("admin:notifications_webhookmessage_changelist") + "?state__exact=failed",
        reverse("admin:notifications_webhookmessage_change", args=[h["message"].pk]),
        reverse("admin:notifications_webhookattempt_changelist"),
        *(reverse("admin:notifications_webhookattempt_changelist") + f"?answer={a}" for a in ("2xx", "other", "none")),
        reverse("admin:notifications_webhookattempt_change", args=[h["attempt"].pk]),
    ]


def test_every_page_renders_and_never_shows_the_secret(admin_client: Client, hooks: dict[str, Any]) -> None:
    for url in pages(hooks):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert hooks["endpoint"].secret.encode() not in response.content, url
    assert b"busy" in admin_client.get(reverse("admin:notifications_webhookattempt_changelist")).content


def test_nothing_is_added_edited_or_deleted_by_hand(admin_client: Client, hooks: dict[str, Any]) -> None:
    for model in ("webhookendpoint", "webhookmessage", "webhookattempt"):
        assert admin_client.get(reverse(f"admin:notifications_{model}_add")).status_code == 403
    change = reverse("admin:notifications_webhookendpoint_change", args=[hooks["endpoint"].pk])
    assert admin_client.post(change, {"url": "x"}).status_code == 403
    assert act(admin_client, "webhookattempt", "delete_selected", [hooks["attempt"].pk], post="yes").status_code == 200
    assert WebhookAttempt.objects.count() == 1 and WebhookEndpoint.objects.get().url == "https://93.184.215.14/hooks"


def test_actions_go_through_the_services(admin_client: Client, hooks: dict[str, Any]) -> None:
    endpoint, message = hooks["endpoint"], hooks["message"]
    act(admin_client, "webhookmessage", "retry", [message.pk])
    message.refresh_from_db()
    assert message.state == WebhookMessage.State.PENDING and message.attempts == 0
    act(admin_client, "webhookendpoint", "disable", [endpoint.pk])
    message.refresh_from_db()
    assert WebhookEndpoint.objects.get().disabled and message.state == WebhookMessage.State.CANCELLED
    act(admin_client, "webhookendpoint", "enable", [endpoint.pk])
    assert not WebhookEndpoint.objects.get().disabled
    act(admin_client, "webhookendpoint", "remove", [endpoint.pk])
    assert WebhookEndpoint.objects.get().removed_at is not None and webhooks.active_endpoints().count() == 0


def test_view_only_staff_cannot_act(make_user: Any, hooks: dict[str, Any]) -> None:
    client = staff(make_user, "view_webhookendpoint", "view_webhookmessage", "view_webhookattempt")
    for url in pages(hooks):
        assert client.get(url).status_code == 200, url
    act(client, "webhookendpoint", "disable", [hooks["endpoint"].pk])
    act(client, "webhookmessage", "retry", [hooks["message"].pk])
    assert not WebhookEndpoint.objects.get().disabled
    assert WebhookMessage.objects.get().state == WebhookMessage.State.FAILED


def test_the_token_form_offers_the_webhooks_scope(admin_client: Client, admin_user: Any) -> None:
    page = admin_client.get(reverse("admin:notifications_apitoken_add")).content.decode()
    assert 'value="webhooks"' in page
    admin_client.post(reverse("admin:notifications_apitoken_add"), {"user": admin_user.pk, "name": "app", "scopes": ["webhooks"]})
    assert ApiToken.objects.get(name="app").scopes == ["webhooks"]
