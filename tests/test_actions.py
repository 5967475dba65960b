"""Answers to a notification's actions on the real database (services/actions.py): first answer wins, under
concurrency too; once per client event id; the answer marks read and is a `state` event; the publisher hears of it
once (one `notification.action` webhook message in the answer's transaction, the signal on commit) and never of a
rollback; read marks are `notification.read` messages."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.db import connection, transaction

from notifications import selectors, services, signals
from notifications.changes import Change
from notifications.errors import NotFound, ServiceError
from notifications.models import ActionAnswer, ClientEvent, InboxEvent, Notification, WebhookEvent, WebhookMessage
from notifications.services import webhooks
from tests.helpers import counted_rows

pytestmark = pytest.mark.django_db

ACTIONS = [
    {"id": "approve", "label": "Approve", "style": "primary"},
    {"id": "reject", "label": "Reject", "style": "danger"},
    {"id": "logs", "label": "Logs", "style": "secondary", "url": "https://ci.example.com/42"},
]


def publish(user: Any, key: str | None = None) -> services.Delivery:
    content = services.Content.checked(title="Deploy v2?", kind="deploy.approval", actions=ACTIONS)
    return services.notify(recipient_ids=[user.id], content=content, idempotency_key=key).deliveries[0]


def answer(user: Any, seq: int, action: str, client_id: str | None = None) -> services.Answered:
    return services.answer_action(user_id=user.id, seq=seq, action_id=action, client_id=client_id)


@pytest.fixture
def signalled() -> Iterator[list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        got.append(kwargs)

    signals.action_answered.connect(receiver, dispatch_uid="test_actions")
    yield got
    signals.action_answered.disconnect(dispatch_uid="test_actions")


@pytest.fixture
def subscribed(settings: Any) -> None:
    settings.WEBHOOKS = {"ALLOW_PRIVATE": True}
    webhooks.create_endpoint(url="http://127.0.0.1:9/hooks", events=[WebhookEvent.ACTION, WebhookEvent.READ], created_by=None)


def messages(event_type: str) -> list[dict[str, Any]]:
    bodies = WebhookMessage.objects.filter(event_type=event_type).order_by("created_at", "id").values_list("body", flat=True)
    return [orjson.loads(b)["data"] for b in bodies]


@pytest.mark.usefixtures("subscribed")
def test_an_answer_stands_marks_read_and_is_a_state_event_and_one_webhook_message(
    user: Any, signalled: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    d = publish(user, key="deploy-42")
    with django_capture_on_commit_callbacks(execute=True):
        result = answer(user, d.seq, "approve")
    assert (result.ok, result.answer, result.notification, result.seq, result.unread) == (True, "approve", d.id, d.seq + 1, 0)
    n = Notification.objects.get(pk=d.id)
    assert n.read_at is not None and n.answer.action == "approve"
    assert (selectors.stream_state(user.id).unread, selectors.stream_state(user.id).unseen) == counted_rows(user.id) == (0, 1)
    [event] = InboxEvent.objects.filter(user=user)
    assert (event.seq, event.op, event.body) == (
        d.seq + 1, "action", {"notification": d.id, "action": "approve", "unread": 0, "unseen": 1, "head_seq": d.seq + 1}
    )  # fmt: skip
    ref = {"id": d.id, "seq": d.seq, "kind": "deploy.approval", "topic": None, "idempotency_key": "deploy-42"}
    user_ref = {"id": user.id, "username": user.username}
    assert messages(WebhookEvent.ACTION) == [{"user": user_ref, "notification": ref, "action": "approve"}]
    assert messages(WebhookEvent.READ) == [{"user": user_ref, "notifications": [ref]}]
    [sent] = signalled
    assert {k: sent[k] for k in ("user_id", "notification_id", "seq", "action")} == {
        "user_id": user.id, "notification_id": d.id, "seq": d.seq, "action": "approve",
    }  # fmt: skip
    assert sent["answered_at"] == ActionAnswer.objects.get().answered_at


@pytest.mark.usefixtures("subscribed")
def test_the_same_answer_again_is_ok_and_a_different_one_is_refused_with_the_standing_answer(
    user: Any, signalled: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    d = publish(user)
    with django_capture_on_commit_callbacks(execute=True):
        answer(user, d.seq, "approve")
        again = answer(user, d.seq, "approve")
        other = answer(user, d.seq, "reject")
    assert (again.ok, again.seq, again.answer) == (True, None, "approve")
    assert (other.ok, other.seq, other.answer) == (False, None, "approve")
    assert other.reply()["error"] == "already_answered"
    assert ActionAnswer.objects.get().action == "approve"
    assert InboxEvent.objects.filter(user=user).count() == 1
    assert len(messages(WebhookEvent.ACTION)) == 1 and len(signalled) == 1, "the publisher hears of the first answer only"


def test_an_answer_to_a_read_notification_keeps_the_counts_and_sends_no_read_event(user: Any, settings: Any) -> None:
    settings.WEBHOOKS = {"ALLOW_PRIVATE": True}
    webhooks.create_endpoint(url="http://127.0.0.1:9/hooks", events=[WebhookEvent.READ], created_by=None)
    d = publish(user)
    services.mark_read(user_id=user.id, ids=[d.id])
    result = answer(user, d.seq, "reject")
    assert (result.ok, result.unread) == (True, 0)
    assert len(messages(WebhookEvent.READ)) == 1, "one for the mark, none for the answer to what was read"
    assert not WebhookMessage.objects.filter(event_type=WebhookEvent.ACTION).exists(), "no endpoint takes actions"


def test_a_client_event_id_is_applied_once_and_answered_alike(user: Any) -> None:
    d = publish(user)
    first = answer(user, d.seq, "approve", client_id="evt-1")
    repeat = answer(user, d.seq, "approve", client_id="evt-1")
    assert repeat.repeated and (repeat.ok, repeat.seq, repeat.answer) == (True, first.seq, "approve")
    assert repeat.reply()["repeated"] is True
    refused = answer(user, d.seq, "reject", client_id="evt-2")
    assert (refused.ok, refused.answer) == (False, "approve")
    # The refusal is stored too: its repeat is answered the same way, and nothing changes.
    assert answer(user, d.seq, "reject", client_id="evt-2").reply() == {**refused.reply(), "repeated": True}
    assert ClientEvent.objects.filter(user=user, op="action").count() == 2
    assert InboxEvent.objects.filter(user=user).count() == 1


def test_an_unknown_action_a_link_or_a_notification_not_mine_is_refused_and_leaves_nothing(user: Any, make_user: Any) -> None:
    d = publish(user)
    theirs = publish(make_user())
    with pytest.raises(ServiceError) as unknown:
        answer(user, d.seq, "deploy", client_id="evt-x")
    assert (unknown.value.code, unknown.value.fields) == ("invalid_field", {"action": "unknown"})
    with pytest.raises(ServiceError) as link:
        answer(user, d.seq, "logs")
    assert (link.value.code, link.value.fields) == ("invalid_field", {"action": "a link"})
    with pytest.raises(NotFound):
        answer(user, theirs.seq + 10, "approve")
    assert not ActionAnswer.objects.exists() and not ClientEvent.objects.exists()
    assert Notification.objects.get(pk=d.id).read_at is None and not InboxEvent.objects.exists()


def test_a_notification_without_actions_has_nothing_to_answer(user: Any) -> None:
    d = services.notify(recipient_ids=[user.id], content=services.Content(title="plain")).deliveries[0]
    with pytest.raises(ServiceError, match="no action"):
        answer(user, d.seq, "approve")


@pytest.mark.usefixtures("subscribed")
def test_a_rolled_back_answer_sends_nothing_and_signals_nothing(
    user: Any, signalled: list[dict[str, Any]], django_capture_on_commit_callbacks: Any
) -> None:
    d = publish(user)

    class Abandoned(Exception):
        pass

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Abandoned), transaction.atomic():
        answer(user, d.seq, "approve")
        assert WebhookMessage.objects.filter(event_type=WebhookEvent.ACTION).count() == 1
        raise Abandoned
    assert not ActionAnswer.objects.exists() and not WebhookMessage.objects.exists()
    assert signalled == []
    assert answer(user, d.seq, "reject").ok, "nothing stood: a later answer is the first"


def test_the_inbox_row_carries_its_answer_and_a_delete_takes_it_along(user: Any) -> None:
    d = publish(user)
    answer(user, d.seq, "approve")
    [row] = selectors.inbox(user.id)
    assert row.answer.action == "approve"
    services.change_inbox(user_id=user.id, change=Change("delete", ids=(d.id,)))
    assert not ActionAnswer.objects.exists()


@pytest.mark.usefixtures("subscribed")
def test_marks_read_are_read_events_by_refs_or_by_bound(user: Any) -> None:
    a, b, c = (publish(user) for _ in range(3))
    services.mark_read(user_id=user.id, ids=[a.id, b.id, 999_999])
    services.mark_read(user_id=user.id, ids=[a.id])  # changes nothing: no event
    services.mark_read(user_id=user.id, everything=True)
    by_ids, everything = messages(WebhookEvent.READ)
    assert [r["id"] for r in by_ids["notifications"]] == [a.id, b.id]
    assert everything["up_to_seq"] == c.seq + 1  # the head when it was made: the first mark's event took a seq


@pytest.mark.django_db(transaction=True)
def test_two_devices_answering_at_once_one_answer_stands(user: Any, signalled: list[dict[str, Any]]) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are what is under test; they need PostgreSQL")
    rounds = [publish(user) for _ in range(15)]
    results: list[tuple[int, services.Answered]] = []
    errors: list[BaseException] = []

    def device(action: str, barrier: threading.Barrier, seq: int) -> None:
        try:
            barrier.wait(10)
            results.append((seq, answer(user, seq, action, client_id=f"{action}-{seq}")))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            connection.close()

    for d in rounds:
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=device, args=(a, barrier, d.seq)) for a in ("approve", "reject")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    for d in rounds:
        [won, lost] = sorted((r for s, r in results if s == d.seq), key=lambda r: not r.ok)
        standing = ActionAnswer.objects.get(notification_id=d.id).action
        assert (won.ok, won.answer, lost.ok, lost.answer) == (True, standing, False, standing)
    assert ActionAnswer.objects.count() == len(rounds) == InboxEvent.objects.filter(op="action").count()
    assert len(signalled) == len(rounds), "one signal per standing answer"
    assert counted_rows(user.id) == (selectors.stream_state(user.id).unread, selectors.stream_state(user.id).unseen)
