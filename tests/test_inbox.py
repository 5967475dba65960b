"""Inbox state on the real database (services/inbox.py, snooze.py): every op, its event, its counters, its client id."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from notifications import changes, protocol, selectors, services
from notifications.changes import Change, Filter
from notifications.errors import ServiceError
from notifications.models import AwayDelivery, ClientEvent, InboxEvent, Notification, Topic, UserStream
from notifications.services import inbox, snooze
from tests.helpers import counted_rows

pytestmark = pytest.mark.django_db


def publish(user: Any, n: int = 1, **content: Any) -> list[int]:
    return [services.notify(recipient_ids=[user.id], content=services.Content(title=f"n{i}", **content)).deliveries[0].id for i in range(n)]


def apply(user: Any, op: str, client_id: str | None = None, **fields: Any) -> inbox.Outcome:
    return services.change_inbox(user_id=user.id, change=Change(op, **fields), client_id=client_id)


def seq_of(outcome: inbox.Outcome) -> int:
    assert outcome.seq is not None, "the change changed nothing"
    return outcome.seq


def stream(user: Any) -> UserStream:
    return UserStream.objects.get(user_id=user.id)


def assert_counts_exact(user: Any) -> None:
    s = stream(user)
    assert (s.unread, s.unseen) == counted_rows(user.id)


def test_each_op_by_ids_moves_the_counters_by_what_changed(user: Any) -> None:
    ids = publish(user, 4)
    assert (stream(user).unread, stream(user).unseen) == (4, 4)
    read = apply(user, "read", ids=(ids[0], ids[1]))
    assert (read.changed_ids, read.seq, read.unread, read.unseen) == ([ids[0], ids[1]], 5, 2, 4)
    archived = apply(user, "archive", ids=(ids[1], ids[2]))  # one read, one unread: both leave the inbox
    assert (archived.unread, archived.unseen) == (1, 2)
    assert apply(user, "unarchive", ids=(ids[2],)).unread == 2
    assert apply(user, "unread", ids=(ids[0],)).unread == 3
    deleted = apply(user, "delete", ids=(ids[3], 999_999))
    assert (deleted.changed_ids, deleted.unread, deleted.unseen) == ([ids[3]], 2, 2)
    assert not Notification.objects.filter(id=ids[3]).exists()
    assert_counts_exact(user)
    assert list(InboxEvent.objects.filter(user=user).order_by("seq").values_list("seq", "op")) == [
        (5, "read"), (6, "archive"), (7, "unarchive"), (8, "unread"), (9, "delete"),
    ]  # fmt: skip
    assert stream(user).head_seq == 9


def test_an_op_that_changes_nothing_takes_no_seq(user: Any, make_user: Any) -> None:
    ids = publish(user, 2)
    theirs = publish(make_user(), 1)
    apply(user, "read", ids=(ids[0],))
    again = apply(user, "read", ids=(ids[0], theirs[0]))
    assert (again.seq, again.changed, again.head_seq) == (None, 0, 3)
    assert apply(user, "unarchive", ids=(ids[1],)).seq is None
    assert apply(user, "seen", up_to_seq=0).seq is None
    assert InboxEvent.objects.filter(user=user).count() == 1
    assert Notification.objects.get(id=theirs[0]).read_at is None


def test_an_event_is_the_frame_every_device_is_sent(user: Any) -> None:
    ids = publish(user, 2)
    outcome = apply(user, "archive", ids=tuple(ids))
    frame = {"type": "state", "seq": 3, "op": "archive", "ids": ids, "unread": 0, "unseen": 0, "head_seq": 3}
    event = InboxEvent.objects.get(user=user, seq=seq_of(outcome))
    assert protocol.state_event(seq=event.seq, op=event.op, fields=event.body) == frame
    replayed = selectors.replay_page(user.id, since=0, limit=10)
    assert [orjson.loads(f)["type"] for f in replayed.frames] == ["notification", "notification", "state"]
    assert orjson.loads(replayed.frames[-1]) == frame


def test_seen_counts_what_is_in_the_inbox_above_it(user: Any) -> None:
    ids = publish(user, 5)
    apply(user, "archive", ids=(ids[1],))  # seq 6
    outcome = apply(user, "seen", up_to_seq=3)
    assert (outcome.changed, outcome.up_to_seq, outcome.unseen, outcome.unread) == (2, 3, 2, 4)
    assert stream(user).seen_seq == 3
    assert apply(user, "seen", up_to_seq=2).seq is None  # seen never goes back
    beyond = apply(user, "seen", up_to_seq=10**6)  # up to the head (7), no further; the event is at 8
    assert (beyond.up_to_seq, beyond.seq, beyond.unseen) == (7, 8, 0)
    assert apply(user, "unarchive", ids=(ids[1],)).unseen == 0  # at or below seen_seq: back, but seen
    publish(user)
    assert stream(user).unseen == 1
    assert_counts_exact(user)


def test_filter_ops_take_a_view_a_topic_a_kind_prefix_and_a_bound(user: Any) -> None:
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    builds = publish(user, 2, kind="build.failed")
    builder = publish(user, 1, kind="builder")
    deploys = publish(user, 2, topic_id=topic.id)
    outcome = apply(user, "read", filter=Filter(kind="build"))
    assert (outcome.changed, outcome.up_to_seq, outcome.unread) == (2, 5, 3)
    assert set(Notification.objects.filter(read_at__isnull=False).values_list("id", flat=True)) == set(builds)
    assert apply(user, "archive", filter=Filter(topic="deploys", up_to_seq=4)).changed == 1
    assert apply(user, "archive", filter=Filter(topic="no-such-topic")).changed == 0
    assert apply(user, "delete", filter=Filter(archived=True)).changed == 1  # the archive's only one
    assert set(Notification.objects.values_list("id", flat=True)) == {*builds, *builder, deploys[1]}
    cleared = apply(user, "archive", filter=Filter())
    assert (cleared.changed, cleared.unread, cleared.unseen) == (4, 0, 0)
    assert apply(user, "unarchive", filter=Filter(kind="builder")).unread == 1
    event = InboxEvent.objects.get(user=user, seq=seq_of(cleared))
    assert (event.body["filter"], event.body["up_to_seq"]) == ({}, seq_of(cleared) - 1)
    assert_counts_exact(user)


def test_a_filter_op_goes_in_chunks_inside_one_transaction(user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbox, "CHUNK", 3)
    publish(user, 10)
    with CaptureQueriesContext(connection) as queries:
        outcome = apply(user, "read", filter=Filter())
    assert outcome.changed == 10 and outcome.unread == 0
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "notifications_notification"')]
    assert len(updates) == 4  # 3 + 3 + 3 + 1, never one unbounded statement
    assert InboxEvent.objects.filter(user=user).count() == 1
    assert_counts_exact(user)


def test_a_client_id_is_applied_once_and_a_repeat_never_undoes_a_later_change(user: Any, make_user: Any) -> None:
    (a,) = publish(user)
    first = apply(user, "read", client_id="event-A", ids=(a,))
    apply(user, "unread", client_id="event-B", ids=(a,))
    repeat = apply(user, "read", client_id="event-A", ids=(a,))
    assert repeat.repeated and (repeat.op, repeat.seq, repeat.changed) == ("read", first.seq, 1)
    assert (repeat.unread, repeat.head_seq) == (1, 3)  # today's counts, not the stored ones
    assert Notification.objects.get(id=a).read_at is None  # stays unread
    assert InboxEvent.objects.filter(user=user).count() == 2
    assert ClientEvent.objects.filter(user=user).count() == 2
    assert not apply(make_user(), "seen", client_id="event-A", up_to_seq=0).repeated  # another user's id is another event


def test_a_change_that_fails_leaves_no_event_no_client_id_and_no_counter_moved(user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = publish(user, 2)

    def broken(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("the database went away mid-change")

    monkeypatch.setattr(inbox, "record_event", broken)
    with pytest.raises(RuntimeError):
        apply(user, "archive", client_id="x1", ids=tuple(ids))
    assert Notification.objects.filter(archived_at__isnull=False).count() == 0
    assert not ClientEvent.objects.exists() and not InboxEvent.objects.exists()
    assert (stream(user).unread, stream(user).head_seq) == (2, 2)


def test_snooze_hides_until_its_time_then_brings_it_back_as_new(user: Any, settings: Any) -> None:
    ids = publish(user, 3)
    AwayDelivery.objects.create(notification_id=ids[0], channel="email", state="sent", at=timezone.now())
    apply(user, "seen", up_to_seq=3)
    apply(user, "read", ids=(ids[1],))
    until = timezone.now() + timedelta(hours=1)
    outcome = apply(user, "snooze", ids=(ids[0], ids[1]), until=until)
    assert (outcome.unread, outcome.unseen) == (1, 0)
    assert InboxEvent.objects.get(seq=seq_of(outcome)).body["until"] == until.isoformat()
    assert [n.id for n in selectors.inbox(user.id)] == [ids[2]]
    assert {n.id for n in selectors.inbox(user.id, view=selectors.View.SNOOZED)} == {ids[0], ids[1]}
    # The wake is a task for that moment, enqueued in the snooze's transaction.
    task = DBTaskResult.objects.get(task_path=f"{snooze.__name__}.wake_task", status=TaskResultStatus.READY)
    assert task.run_after == until and task.args_kwargs["args"] == [user.id]

    assert services.wake(user_id=user.id) == 0  # not yet
    assert services.wake(user_id=user.id, now=until) == 2
    woken = list(Notification.objects.filter(id__in=ids[:2]).order_by("seq"))
    assert [(n.id, n.seq) for n in woken] == [(ids[0], 7), (ids[1], 8)]  # new seqs, in their old order
    assert all(n.read_at is None and n.snoozed_until is None and n.created_at == until for n in woken)
    assert not AwayDelivery.objects.exists()  # due again on the away channels
    s = stream(user)
    assert (s.head_seq, s.unread, s.unseen) == (8, 3, 2)
    assert_counts_exact(user)
    # The old seqs are holes: a replay skips them and brings the woken ones at their new seqs.
    seqs = [orjson.loads(f)["seq"] for f in selectors.replay_page(user.id, since=0, limit=50).frames]
    assert seqs == [3, 4, 5, 6, 7, 8]


def test_archive_ends_a_snooze_and_snooze_takes_one_out_of_the_archive(user: Any) -> None:
    a, b = publish(user, 2)
    until = timezone.now() + timedelta(days=1)
    apply(user, "snooze", ids=(a,), until=until)
    apply(user, "archive", ids=(a,))
    apply(user, "archive", ids=(b,))
    apply(user, "snooze", ids=(b,), until=until)
    rows = [(n.archived_at is not None, n.snoozed_until) for n in Notification.objects.order_by("id")]
    assert rows == [(True, None), (False, until)]
    assert services.wake(user_id=user.id, now=until) == 1
    assert_counts_exact(user)


def test_the_worker_sweep_wakes_every_users_overdue_snoozes(make_user: Any) -> None:
    users = [make_user() for _ in range(3)]
    for u in users:
        ids = publish(u, 2)
        apply(u, "snooze", ids=(ids[0],), until=timezone.now() + timedelta(minutes=1))
    assert services.wake_overdue() == 0
    assert services.wake_overdue(now=timezone.now() + timedelta(minutes=2)) == 3
    assert not Notification.objects.filter(snoozed_until__isnull=False).exists()


def test_random_ops_keep_both_counters_exact(user: Any) -> None:
    rng = random.Random(23)
    topic = Topic.objects.create(slug="t", title="T")
    publish(user, 20)
    publish(user, 10, topic_id=topic.id, kind="a.b")
    for step in range(120):
        ids = tuple(rng.sample(list(Notification.objects.filter(recipient=user).values_list("id", flat=True)), 3))
        op = rng.choice(changes.OPS)
        head = stream(user).head_seq
        if op == "seen":
            apply(user, op, up_to_seq=rng.randint(0, head + 2))
        elif op == "snooze":
            apply(user, op, ids=ids, until=timezone.now() + timedelta(minutes=1))
        elif op in changes.BY_FILTER and rng.random() < 0.4:
            f = Filter(topic=rng.choice([None, "t"]), kind=rng.choice([None, "a", "a.b"]), up_to_seq=rng.choice([None, head // 2]))
            apply(user, op, filter=f, client_id=f"c{step}")
        elif op != "delete" or rng.random() < 0.3:
            apply(user, op, ids=ids, client_id=f"c{step}")
        if rng.random() < 0.2:
            services.wake(user_id=user.id, now=timezone.now() + timedelta(minutes=2))
        if rng.random() < 0.2:
            publish(user, 1)
        assert_counts_exact(user)


def test_prune_forgets_old_events_and_client_ids(user: Any, settings: Any) -> None:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "RETENTION_DAYS": 10, "CLIENT_EVENT_DAYS": 2}
    ids = publish(user, 2)
    apply(user, "read", client_id="old", ids=(ids[0],))
    apply(user, "seen", client_id="new", up_to_seq=3)
    InboxEvent.objects.filter(seq=3).update(created_at=timezone.now() - timedelta(days=11))
    ClientEvent.objects.filter(client_id="old").update(created_at=timezone.now() - timedelta(days=3))
    services.prune()
    assert list(InboxEvent.objects.values_list("seq", flat=True)) == [4]
    assert list(ClientEvent.objects.values_list("client_id", flat=True)) == ["new"]
    assert stream(user).pruned_seq == 3  # a resume from below it gets `reset`
    assert selectors.replay_page(user.id, since=1, limit=10).reset_reason == "retention"


def test_retention_and_the_operator_take_off_what_the_deleted_rows_counted(user: Any, settings: Any) -> None:
    ids = publish(user, 4)
    apply(user, "archive", ids=(ids[0],))
    apply(user, "seen", up_to_seq=2)
    Notification.objects.filter(id__in=ids[:3]).update(created_at=timezone.now() - timedelta(days=400))
    services.prune()
    assert_counts_exact(user)
    assert services.delete_notifications([ids[3]]) == 1
    assert_counts_exact(user)
    assert InboxEvent.objects.filter(user=user).latest("seq").op == "delete"  # every device hears of the operator's delete


def test_a_host_without_the_workers_queue_refuses_a_snooze_and_changes_nothing(user: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (a,) = publish(user)
    # What a host whose TASKS has no "away" queue gets: the plain function, no task.
    monkeypatch.setattr(snooze, "wake_task", lambda user: 0)
    with pytest.raises(ServiceError) as refused:
        apply(user, "snooze", client_id="s1", ids=(a,), until=timezone.now() + timedelta(hours=1))
    assert refused.value.code == "snooze_unavailable"
    assert Notification.objects.get(id=a).snoozed_until is None
    assert not InboxEvent.objects.exists() and not ClientEvent.objects.exists()
