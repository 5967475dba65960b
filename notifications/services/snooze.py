"""A snoozed notification comes back as new at its time: a new seq, unread, live, and due again on the away channels.

Each snooze enqueues a wake task for its time, in the snooze's own transaction (a snooze
rolled back leaves no task); the worker sweeps up overdue ones when it starts
(tasks.py runs it). The tasks are defined here, beside what they run, because services
enqueue them and tasks.py is above services. A host whose TASKS setting has no queue for
them runs no worker, so nothing would ever wake a snooze: there a snooze is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ParamSpec, TypeVar

from django.db import transaction
from django.utils import timezone
from django_tasks import task
from django_tasks.base import Task
from django_tasks.exceptions import InvalidTaskError

from .. import conf, push, users
from ..errors import ServiceError
from ..models import AwayDelivery, Notification, UserStream
from .streams import locked_stream

CHUNK = 1000  # notifications woken per statement
P = ParamSpec("P")
T = TypeVar("T")


def _task_if_queued(func: Callable[P, T]) -> Task[P, T] | Callable[P, T]:
    """A task on the worker's queue; the plain function where the host's TASKS has no such queue (it runs no worker)."""
    try:
        return task(queue_name=conf.TASK_QUEUE)(func)
    except InvalidTaskError:
        return func


@_task_if_queued
def wake_task(user: users.WireId) -> int:
    return wake(user_id=users.from_wire(user))


@_task_if_queued
def wake_overdue_task() -> int:
    return wake_overdue()


# What the worker's rows of these tasks name (a task is found by its function's path).
WAKE_PATHS = frozenset({f"{__name__}.wake_task", f"{__name__}.wake_overdue_task"})


def wake_at(user_id: users.UserId, until: datetime) -> None:
    """Enqueue the wake of the user's snoozes for `until`, in the caller's transaction."""
    if not isinstance(wake_task, Task):
        raise ServiceError("snooze_unavailable", f"snoozing needs the worker (manage.py worker) and its task queue {conf.TASK_QUEUE!r}")
    wake_task.using(run_after=until).enqueue(users.wire(user_id))


def sweep_later() -> None:
    """Enqueue a wake of every overdue snooze (the worker's start; a wake lost with its worker)."""
    if isinstance(wake_overdue_task, Task):
        wake_overdue_task.enqueue()


def wake(*, user_id: users.UserId, now: datetime | None = None) -> int:
    """Bring back the user's snoozed notifications whose time has come; how many.

    Each takes a new seq above the head (its old one becomes a hole, as a deleted one's),
    is unread and created now, and loses its away deliveries: a device holding it at its
    old seq replaces it, and the away channels find it due again.
    """
    with transaction.atomic():
        stream = locked_stream(user_id)
        now = now or timezone.now()  # under the lock: created_at follows seq order
        head = stream.head_seq
        woken: list[Notification] = []
        while True:
            rows = list(Notification.objects.filter(recipient_id=user_id, snoozed_until__lte=now).order_by("seq")[:CHUNK])
            if not rows:
                break
            for n in rows:
                head += 1
                n.seq, n.snoozed_until, n.read_at, n.created_at = head, None, None, now
            Notification.objects.bulk_update(rows, ["seq", "snoozed_until", "read_at", "created_at"])
            AwayDelivery.objects.filter(notification_id__in=[n.id for n in rows]).delete()
            woken += rows
        if woken:
            # Back in the inbox, unread, above seen_seq (which is at most the old head): counted in both.
            UserStream.objects.filter(pk=stream.pk).update(
                head_seq=head, unread=stream.unread + len(woken), unseen=stream.unseen + len(woken)
            )
            transaction.on_commit(lambda: push.notifications_created(woken))
    return len(woken)


def wake_overdue(*, now: datetime | None = None) -> int:
    """Every user's overdue snoozes, one user per transaction (a wake task lost with a worker, say)."""
    now = now or timezone.now()
    overdue = Notification.objects.filter(snoozed_until__lte=now).order_by("recipient_id").values_list("recipient_id", flat=True).distinct()
    return sum(wake(user_id=uid, now=now) for uid in list(overdue))
