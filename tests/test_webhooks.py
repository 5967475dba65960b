"""Webhooks end to end in one process: emit in the caller's transaction, a round of the worker's task, a loopback
HTTPS receiver that verifies every signature and timestamp with the `standardwebhooks` library; retries with
backoff, giving up, refusal at send time, the events wired to acks and the away channels.
(The worker as a real process, killed mid-send: test_worker_webhooks.py.)"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from notifications import outbound, services
from notifications.models import Channel, Notification, Topic, WebhookAttempt, WebhookEndpoint, WebhookEvent, WebhookMessage
from notifications.services import webhooks
from tests.away import SmtpServer, away_settings, use_smtp
from tests.webhook_receiver import TEST_HOST, WebhookReceiver

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

RETRY = [60.0, 600.0]  # in-process rounds pass `now`: the schedule is walked without waiting


def webhook_settings(receiver: WebhookReceiver, **overrides: Any) -> dict[str, Any]:
    return {"ALLOW_PRIVATE": True, "RETRY_SECONDS": RETRY, "TIMEOUT_SECONDS": 5, "CONCURRENCY": 1, "CA_FILE": receiver.cert, **overrides}


@pytest.fixture
def receiver(settings: Any) -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    settings.WEBHOOKS = webhook_settings(r)
    yield r
    r.stop()


def endpoint(receiver: WebhookReceiver, *events: str, url: str | None = None) -> WebhookEndpoint:
    e = webhooks.create_endpoint(url=url or receiver.url, events=events or [WebhookEvent.ACTION], created_by=None)
    receiver.secret = e.secret
    return e


def later(seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=seconds)


def answer_action(user: Any, action: str = "approve") -> services.Delivery:
    """A notification with actions, answered by its user (services/actions.py emits in the answer's transaction)."""
    content = services.Content.checked(title="Deploy?", actions=[{"id": action, "label": action.title(), "style": "primary"}])
    delivery = services.notify(recipient_ids=[user.id], content=content, idempotency_key=f"deploy-{action}").deliveries[0]
    assert services.answer_action(user_id=user.id, seq=delivery.seq, action_id=action).ok
    return delivery


def test_an_action_event_reaches_the_receiver_signed_once(receiver: WebhookReceiver, user: Any) -> None:
    endpoint(receiver)
    delivery = answer_action(user)
    [message] = WebhookMessage.objects.all()
    assert message.id.startswith("msg_") and message.state == WebhookMessage.State.PENDING

    report = services.deliver_webhooks()

    assert report.attempts == 1 and receiver.errors == []
    assert list(receiver.accepted) == [message.id]
    body = receiver.accepted[message.id]
    assert body["type"] == "notification.action" and body["timestamp"].endswith("Z")
    assert body["data"] == {
        "user": {"id": user.id, "username": user.username},
        "notification": {"id": delivery.id, "seq": delivery.seq, "kind": "message", "topic": None, "idempotency_key": "deploy-approve"},
        "action": "approve",
    }
    message.refresh_from_db()
    assert message.state == WebhookMessage.State.DELIVERED and message.attempts == 1
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.status_code == 200 and attempt.error == "" and '"ok": true' in attempt.response
    assert services.deliver_webhooks(now=later(3600)).attempts == 0, "delivered is final"


def test_only_subscribed_enabled_endpoints_get_a_message(receiver: WebhookReceiver, user: Any) -> None:
    wants = endpoint(receiver, WebhookEvent.ACTION, WebhookEvent.DELIVERED)
    endpoint(receiver, WebhookEvent.EMAILED)
    off = endpoint(receiver, WebhookEvent.ACTION)
    webhooks.set_disabled([off.pk], disabled=True)
    answer_action(user)
    assert list(WebhookMessage.objects.values_list("endpoint_id", flat=True)) == [wants.pk]


def test_emit_in_a_rolled_back_transaction_sends_nothing(receiver: WebhookReceiver, user: Any) -> None:
    endpoint(receiver)

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned), transaction.atomic():
        webhooks.emit(WebhookEvent.ACTION, {"action": "approve"}, user_id=user.id)
        assert WebhookMessage.objects.count() == 1
        raise Abandoned
    assert not WebhookMessage.objects.exists()
    services.deliver_webhooks(now=later(1))
    assert receiver.received == []


@pytest.mark.django_db(transaction=True)
def test_emit_outside_a_transaction_or_of_an_unknown_type_is_refused(receiver: WebhookReceiver, user: Any) -> None:
    endpoint(receiver)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        webhooks.emit(WebhookEvent.ACTION, {}, user_id=user.id)
    with pytest.raises(ValueError, match="unknown webhook event"), transaction.atomic():
        webhooks.emit("notification.nope", {}, user_id=user.id)
    assert not WebhookMessage.objects.exists()


def test_a_500_is_retried_with_backoff_and_the_same_webhook_id(receiver: WebhookReceiver, user: Any) -> None:
    endpoint(receiver)
    answer_action(user)
    [message] = WebhookMessage.objects.all()
    receiver.fail = 2

    start = timezone.now()
    services.deliver_webhooks(now=start)
    message.refresh_from_db()
    assert message.state == WebhookMessage.State.PENDING and message.attempts == 1
    assert RETRY[0] - 1 < (message.next_attempt_at - start).total_seconds() < RETRY[0] + 5
    assert services.deliver_webhooks(now=start + timedelta(seconds=RETRY[0] - 5)).attempts == 0, "not before its time"
    services.deliver_webhooks(now=start + timedelta(seconds=RETRY[0] + 5))
    message.refresh_from_db()
    assert message.attempts == 2 and (message.next_attempt_at - start).total_seconds() > RETRY[1]
    services.deliver_webhooks(now=start + timedelta(seconds=RETRY[0] + RETRY[1] + 10))

    assert [r["status"] for r in receiver.received] == [500, 500, 200]
    assert {r["id"] for r in receiver.received} == {message.id}
    assert list(receiver.accepted) == [message.id] and receiver.errors == []
    message.refresh_from_db()
    assert message.state == WebhookMessage.State.DELIVERED and message.attempts == 3
    assert list(WebhookAttempt.objects.order_by("id").values_list("status_code", flat=True)) == [500, 500, 200]


def test_after_the_last_retry_the_message_is_given_up_and_recorded(receiver: WebhookReceiver, user: Any) -> None:
    endpoint(receiver)
    answer_action(user)
    receiver.fail = 100
    for hours in (0, 1, 2, 3):  # past each retry's time
        services.deliver_webhooks(now=later(hours * 3600))
    [message] = WebhookMessage.objects.all()
    assert message.state == WebhookMessage.State.FAILED and message.attempts == len(RETRY) + 1 and message.finished_at
    assert len(receiver.received) == len(RETRY) + 1 and receiver.accepted == {}
    assert WebhookAttempt.objects.filter(message=message, status_code=500).count() == len(RETRY) + 1

    assert webhooks.retry_now([message.id]) == 1  # the operator's second chance (the admin's action)
    receiver.fail = 0
    services.deliver_webhooks()
    assert list(receiver.accepted) == [message.id]


def test_no_answer_within_the_timeout_is_a_failed_attempt(receiver: WebhookReceiver, user: Any, settings: Any) -> None:
    import threading

    settings.WEBHOOKS = webhook_settings(receiver, TIMEOUT_SECONDS=0.5)
    endpoint(receiver)
    answer_action(user)
    receiver.hold = threading.Event()
    services.deliver_webhooks()
    receiver.hold.set()
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.status_code is None and "timed out" in attempt.error.lower()
    assert WebhookMessage.objects.get().state == WebhookMessage.State.PENDING


def test_a_private_address_is_refused_at_send_time_without_the_setting(receiver: WebhookReceiver, user: Any, settings: Any) -> None:
    endpoint(receiver)  # created while NOTIFY_WEBHOOK_ALLOW_PRIVATE was on
    answer_action(user)
    settings.WEBHOOKS = webhook_settings(receiver, ALLOW_PRIVATE=False)
    services.deliver_webhooks()
    assert receiver.received == []
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.status_code is None and attempt.error == "refused: 127.0.0.1 is a loopback address"


class Resolver:
    """The machine's resolver cannot be pointed at a test DNS server, so TEST_HOST's answers come from here:
    `answers` in turn, the last one for good. Every other name goes to the real resolver."""

    def __init__(self, monkeypatch: Any, *answers: str) -> None:
        self.answers = list(answers)
        self.real = socket.getaddrinfo
        monkeypatch.setattr(socket, "getaddrinfo", self)

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != TEST_HOST:
            return self.real(host, port, *args, **kwargs)
        address = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return self.real(address, port, *args, **kwargs)


def test_a_name_that_turns_private_after_its_check_is_refused_at_send_time(
    receiver: WebhookReceiver, user: Any, settings: Any, monkeypatch: Any
) -> None:
    """DNS rebinding: public when the endpoint was created, loopback when the worker sends."""
    settings.WEBHOOKS = webhook_settings(receiver, ALLOW_PRIVATE=False)
    Resolver(monkeypatch, "93.184.215.14", "127.0.0.1")
    endpoint(receiver, url=f"https://{TEST_HOST}:{receiver.port}/hooks")
    answer_action(user)
    services.deliver_webhooks()
    assert receiver.received == []
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.error == f"refused: {TEST_HOST} resolves to a loopback address (127.0.0.1)"


def test_the_request_goes_to_the_address_checked_with_the_name_for_tls_and_host(
    receiver: WebhookReceiver, user: Any, monkeypatch: Any
) -> None:
    Resolver(monkeypatch, "127.0.0.1")
    endpoint(receiver, url=f"https://{TEST_HOST}:{receiver.port}/hooks")
    answer_action(user)
    services.deliver_webhooks()
    assert [(r["host"], r["status"]) for r in receiver.received] == [(f"{TEST_HOST}:{receiver.port}", 200)]


def test_a_certificate_the_worker_does_not_trust_is_a_failed_attempt(receiver: WebhookReceiver, user: Any, settings: Any) -> None:
    settings.WEBHOOKS = webhook_settings(receiver, CA_FILE="")  # certifi's bundle, which never signed it
    endpoint(receiver)
    answer_action(user)
    services.deliver_webhooks()
    assert receiver.received == []
    assert "CERTIFICATE_VERIFY_FAILED" in WebhookAttempt.objects.get().error


def test_a_removed_or_disabled_endpoint_gets_nothing_more(receiver: WebhookReceiver, user: Any) -> None:
    gone, off = endpoint(receiver), endpoint(receiver)
    answer_action(user, "a")
    webhooks.remove_endpoint(gone.pk)
    webhooks.set_disabled([off.pk], disabled=True)
    services.deliver_webhooks()
    assert receiver.received == []
    assert set(WebhookMessage.objects.values_list("state", flat=True)) == {WebhookMessage.State.CANCELLED}
    answer_action(user, "b")
    assert WebhookMessage.objects.filter(state=WebhookMessage.State.PENDING).count() == 0


def test_an_ack_that_moves_the_delivered_cursor_is_a_delivered_event(receiver: WebhookReceiver, user: Any) -> None:
    endpoint(receiver, WebhookEvent.DELIVERED)
    sent = [services.notify(recipient_ids=[user.id], content=services.Content(title=f"n{i}")).deliveries[0] for i in range(3)]
    services.ack(user_id=user.id, seq=sent[1].seq)
    services.ack(user_id=user.id, seq=sent[1].seq)  # moves nothing: no event
    services.ack(user_id=user.id, seq=sent[2].seq)
    services.deliver_webhooks()
    bodies = sorted((b["data"] for b in receiver.accepted.values()), key=lambda d: d["delivered_seq"])
    assert [(d["delivered_seq"], [n["id"] for n in d["notifications"]], d["more"]) for d in bodies] == [
        (sent[1].seq, [sent[0].id, sent[1].id], False),
        (sent[2].seq, [sent[2].id], False),
    ]
    assert bodies[0]["user"] == {"id": user.id, "username": user.username}


def test_an_email_digest_sent_is_an_emailed_event(receiver: WebhookReceiver, make_user: Any, settings: Any) -> None:
    smtp = SmtpServer().start()
    try:
        use_smtp(settings, smtp.port)
        settings.AWAY = away_settings()
        endpoint(receiver, WebhookEvent.EMAILED, WebhookEvent.PUSHED)
        alice = make_user("alice", email="alice@example.com")
        ids = [services.notify(recipient_ids=[alice.id], content=services.Content(title=f"n{i}")).deliveries[0].id for i in range(2)]
        services.deliver_due(channel=Channel.EMAIL, now=later(1))
        assert len(smtp.messages) == 1
    finally:
        smtp.stop()
    services.deliver_webhooks()
    [body] = receiver.accepted.values()
    assert body["type"] == "notification.emailed"
    assert sorted(n["id"] for n in body["data"]["notifications"]) == sorted(ids)


def test_prune_removes_finished_messages_past_retention(receiver: WebhookReceiver, user: Any) -> None:
    endpoint(receiver)
    answer_action(user, "a")
    answer_action(user, "b")
    services.deliver_webhooks()
    answer_action(user, "c")  # still pending: kept however old
    assert webhooks.prune(now=later(86400 * 365)) == 2 + 2  # two messages, their two attempts
    assert WebhookMessage.objects.get().state == WebhookMessage.State.PENDING


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hooks",
        "https://127.0.0.1/hooks",
        "https://localhost/hooks",
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://100.64.0.1/hooks",  # carrier-grade NAT
        "https://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
        "https://[fe80::1]/hooks",
        "https://224.0.0.1/hooks",
        "https://0.0.0.0/hooks",
        "https://2130706433/hooks",  # 127.0.0.1 to getaddrinfo
        "https://127.1/hooks",
        "https://user:pass@93.184.215.14/hooks",
        "https://93.184.215.14/hooks#x",
        "https://93.184.215.14\\.example.com/hooks",
        "https://hooks.exämple.com/x",
        "ftp://93.184.215.14/hooks",
    ],
)
def test_the_rule_refuses_without_the_setting(url: str) -> None:
    with pytest.raises(outbound.Refused):
        outbound.check(url, allow_private=False)


def test_the_setting_lets_loopback_private_and_http_in_never_link_local_or_multicast() -> None:
    for url in ("http://127.0.0.1:8000/h", "https://localhost/h", "https://10.1.2.3/h", "https://[::1]:8443/h"):
        outbound.check(url, allow_private=True)
    for url in ("https://169.254.169.254/", "https://224.0.0.1/", "https://0.0.0.0/", "https://user@127.0.0.1/"):
        with pytest.raises(outbound.Refused):
            outbound.check(url, allow_private=True)
    outbound.check("https://93.184.215.14:8443/hooks?a=1", allow_private=False)  # a public address, any port


def test_a_notification_is_named_alike_from_a_model_and_from_values(user: Any) -> None:
    """notification_ref and refs list the same fields (the away channels use one, the delivered event the other)."""
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    services.notify(
        recipient_ids=[user.id], content=services.Content(title="a", topic_id=topic.id, kind="deploy.done"), idempotency_key="k"
    )
    services.notify(recipient_ids=[user.id], content=services.Content(title="b"))
    rows = Notification.objects.order_by("seq")
    assert webhooks.refs(rows.values(*webhooks.REF_FIELDS)) == [webhooks.notification_ref(n) for n in rows]
    assert webhooks.notification_ref(rows[0])["topic"] == "deploys"
