"""Services and selectors on the real database: sequences, fan-out, idempotency, read state, retention."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from notifications import frames, push, selectors, services, storage
from notifications.errors import NotFound, ServiceError
from notifications.fields import CONTENT_COLUMNS
from notifications.models import Notification, Subscription, Topic, UserStream
from tests.helpers import unread_rows

pytestmark = pytest.mark.django_db


def content(title: str = "hello", **extra: Any) -> services.Content:
    return services.Content(title=title, **extra)


def test_notify_allocates_consecutive_seqs_per_user(make_user: Any) -> None:
    a, b = make_user(), make_user()
    first = services.notify(recipient_ids=[a.id, b.id], content=content())
    second = services.notify(recipient_ids=[a.id], content=content())
    assert [(d.recipient_id, d.seq) for d in first.deliveries] == [(a.id, 1), (b.id, 1)]
    assert [d.seq for d in second.deliveries] == [2]
    assert selectors.stream_state(a.id).head_seq == 2
    assert selectors.stream_state(a.id).unread == 2


def test_notify_unknown_recipient_writes_nothing(user: Any) -> None:
    with pytest.raises(ServiceError) as e:
        services.notify(recipient_ids=[user.id, 999_999], content=content())
    assert e.value.code == "unknown_recipient"
    assert Notification.objects.count() == 0
    assert selectors.stream_state(user.id).head_seq == 0


def test_idempotency_key_returns_first_result_and_writes_nothing(user: Any) -> None:
    first = services.notify(recipient_ids=[user.id], content=content(), idempotency_key="k1")
    again = services.notify(recipient_ids=[user.id], content=content("other"), idempotency_key="k1")
    assert first.created and not again.created
    assert again.deliveries == first.deliveries
    assert Notification.objects.count() == 1


def test_topic_fan_out_reaches_unmuted_subscribers_in_bulk(make_user: Any, django_assert_max_num_queries: Any) -> None:
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    users = [make_user() for _ in range(30)]
    for u in users:
        Subscription.objects.create(user=u, topic=topic)
    Subscription.objects.filter(user=users[0]).update(muted=True)
    services.notify(recipient_ids=[u.id for u in users], content=content("warm up"))  # streams exist now
    with django_assert_max_num_queries(8):  # not one per subscriber
        result = services.publish_to_topic(topic=topic, content=content("v2 is out"))
    assert sorted(d.recipient_id for d in result.deliveries) == sorted(u.id for u in users[1:])
    assert {d.seq for d in result.deliveries} == {2}
    assert Notification.objects.filter(topic=topic).count() == 29


def test_mark_read_by_ids_ignores_other_users_rows(make_user: Any) -> None:
    a, b = make_user(), make_user()
    mine = services.notify(recipient_ids=[a.id], content=content()).deliveries[0]
    theirs = services.notify(recipient_ids=[b.id], content=content()).deliveries[0]
    result = services.mark_read(user_id=a.id, ids=[mine.id, theirs.id])
    assert result.changed_ids == [mine.id]
    assert result.unread == 0
    assert Notification.objects.get(id=theirs.id).read_at is None
    assert selectors.stream_state(b.id).unread == 1


def test_mark_read_all_and_unread_keep_the_counter_exact(user: Any) -> None:
    ids = [services.notify(recipient_ids=[user.id], content=content(f"n{i}")).deliveries[0].id for i in range(5)]
    services.mark_read(user_id=user.id, ids=ids[:2])
    assert selectors.stream_state(user.id).unread == 3 == unread_rows(user.id)
    result = services.mark_read(user_id=user.id, everything=True)
    # Everything up to the head: the five, and the first read mark's own event at seq 6.
    assert result.up_to_seq == 6 and result.unread == 0 == unread_rows(user.id)
    services.mark_unread(user_id=user.id, ids=ids[:1])
    assert selectors.stream_state(user.id).unread == 1 == unread_rows(user.id)
    services.delete_notifications(ids[:1])
    assert selectors.stream_state(user.id).unread == 0 == unread_rows(user.id)


def test_ack_is_cumulative_and_scoped_to_the_recipient(make_user: Any) -> None:
    a, b = make_user(), make_user()
    for _ in range(3):
        services.notify(recipient_ids=[a.id, b.id], content=content())
    assert services.ack(user_id=a.id, seq=2) == 2
    assert services.ack(user_id=a.id, seq=2) == 0
    assert services.ack(user_id=a.id, seq=1) == 0  # never backwards
    assert services.ack(user_id=a.id, seq=99) == 1  # never past the head
    delivered = Notification.objects.filter(selectors.delivered())
    assert sorted(delivered.values_list("recipient_id", "seq")) == [(a.id, 1), (a.id, 2), (a.id, 3)]
    assert UserStream.objects.get(user=b).delivered_seq == 0
    undelivered = Notification.objects.filter(selectors.undelivered())
    assert sorted(undelivered.values_list("recipient_id", "seq")) == [(b.id, 1), (b.id, 2), (b.id, 3)]


def test_stored_rows_say_what_was_published_whichever_columns_vary(
    make_user: Any, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """PostgreSQL binds a varying column as one JSON array: every type must come back as it went in."""
    a, b = make_user(), make_user()
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    soon = timezone.now() + timedelta(days=1)
    contents = [
        services.Content(title="plain"),
        services.Content(
            title='quote " and \\ and ünïcode ✓ {a,b}', body="line\nbreak\ttab", kind="deploy", level="error", url="/x?a=1&b=2",
            data={"nested": {"list": [1, 2.5, None, True]}, "text": "é", "null": None}, expires_at=soon, topic_id=topic.id, actor_id=b.id,
            actions=[{"id": "ok", "label": "Ok ✓", "style": "primary"}, {"id": "see", "label": "See", "style": "danger", "url": "/s"}],
            group_key="deploys ✓",
        ),
        services.Content.trusted(title="", data={"n": 2**53}),  # below the edges: what the storage takes, not what they would
    ]  # fmt: skip
    keys = [None, "key-1", None]
    pushed: list[storage.NewRow] = []
    monkeypatch.setattr(push, "notifications_created", lambda rows, **_: pushed.extend(rows))
    with django_capture_on_commit_callbacks(execute=True):
        services.publish_many([services.PublishRequest([a.id, b.id], c, k) for c, k in zip(contents, keys, strict=True)])
    # What is pushed live is what a replay will read back.
    in_db = {n.id: (n.recipient_id, n.seq, n.created_at, n.title) for n in Notification.objects.all()}
    assert {row.id: (row.recipient_id, row.seq, row.created_at, frames.notification_frame(row, None)["title"]) for row in pushed} == in_db
    for user in (a, b):
        rows = list(Notification.objects.filter(recipient=user).order_by("seq"))
        assert [r.seq for r in rows] == [1, 2, 3]
        for row, c, key in zip(rows, contents, keys, strict=True):
            sent = {name: getattr(c, name) for name in CONTENT_COLUMNS}
            assert {name: getattr(row, name) for name in CONTENT_COLUMNS} == sent
            assert (row.idempotency_key, row.read_at) == (key, None)
    assert rows[1].actions[1] == {"id": "see", "label": "See", "style": "danger", "url": "/s"} and rows[1].actions[0]["url"] == ""


def test_replay_pages_and_reset(user: Any) -> None:
    for i in range(7):
        services.notify(recipient_ids=[user.id], content=content(f"n{i}"))
    page = selectors.replay_page(user.id, since=0, limit=3)
    assert (len(page.frames), page.last_seq, page.more) == (3, 3, True)
    page = selectors.replay_page(user.id, since=6, limit=3)
    assert (len(page.frames), page.last_seq, page.more) == (1, 7, False)
    assert selectors.replay_page(user.id, since=99, limit=3).reset_reason == "cursor_ahead"
    Notification.objects.filter(recipient=user, seq__lte=4).update(created_at=timezone.now() - timedelta(days=400))
    services.prune()
    assert UserStream.objects.get(user=user).pruned_seq == 4
    assert selectors.replay_page(user.id, since=2, limit=3).reset_reason == "retention"
    assert selectors.replay_page(user.id, since=4, limit=10).last_seq == 7
    assert selectors.stream_state(user.id).unread == unread_rows(user.id) == 3


def test_expired_notifications_are_not_replayed(user: Any) -> None:
    services.notify(recipient_ids=[user.id], content=services.Content.trusted(title="gone", expires_at=timezone.now() - timedelta(1)))
    services.notify(recipient_ids=[user.id], content=content("here"))
    page = selectors.replay_page(user.id, since=0, limit=10)
    assert len(page.frames) == 1 and '"here"' in page.frames[0]


def test_subscribe_to_private_or_missing_topic_is_not_found(user: Any) -> None:
    Topic.objects.create(slug="secret", title="Secret", public=False)
    for slug in ("secret", "missing"):
        with pytest.raises(NotFound):
            services.subscribe(user_id=user.id, slug=slug)
    Topic.objects.create(slug="open", title="Open")
    services.subscribe(user_id=user.id, slug="open")
    services.subscribe(user_id=user.id, slug="open")
    assert Subscription.objects.filter(user=user).count() == 1
    assert services.unsubscribe(user_id=user.id, slug="open") is True


@pytest.mark.django_db(transaction=True)
def test_concurrent_notify_gives_gapless_seqs(user: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are what is under test; they need PostgreSQL")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(250):
                services.notify(recipient_ids=[user.id], content=content())
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = sorted(Notification.objects.filter(recipient=user).values_list("seq", flat=True))
    assert seqs == list(range(1, 1001))
    assert selectors.stream_state(user.id).head_seq == 1000 == selectors.stream_state(user.id).unread


@pytest.mark.django_db(transaction=True)
def test_topic_fan_out_racing_direct_notify_gives_gapless_seqs(make_user: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are what is under test; they need PostgreSQL")
    topic = Topic.objects.create(slug="race", title="Race")
    users = [make_user() for _ in range(20)]
    for u in users:
        Subscription.objects.create(user=u, topic=topic)
    errors: list[BaseException] = []

    def run(fn: Any) -> None:
        try:
            for _ in range(50):
                fn()
        except BaseException as e:  # pragma: no cover
            errors.append(e)
        finally:
            connection.close()

    jobs = [
        lambda: services.publish_to_topic(topic=topic, content=content("fan")),
        lambda: services.publish_to_topic(topic=topic, content=content("fan")),
        lambda: services.notify(recipient_ids=[u.id for u in reversed(users)], content=content("direct")),
        lambda: services.notify(recipient_ids=[users[0].id], content=content("one")),
    ]
    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for u in users:
        seqs = sorted(Notification.objects.filter(recipient=u).values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) == (200 if u == users[0] else 150)
