"""The away channels' task on django-tasks (database backend, docs/decisions/0008-away-channels-task-engine.md).

One `deliver_due` task per channel is ever waiting: each run does a round of
due work found by query (services/away.py) and enqueues the next, at once when
there was more, else after the poll interval. The publish path enqueues nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone
from django_tasks import TaskResultStatus, task
from django_tasks_db.models import DBTaskResult

from . import delivery, services

log = logging.getLogger(__name__)
QUEUE = "away"
KEEP_RESULTS = timedelta(hours=1)


@task(queue_name=QUEUE)
def deliver_due(channel: str) -> dict[str, int]:
    report = services.deliver_due(channel=channel)
    # Idle rounds (every poll interval, per channel) stay out of an INFO log.
    level = logging.INFO if report.sent or report.failures else logging.DEBUG
    log.log(level, "away round on %s: %d user(s), %d sent, %d failed", channel, report.users, report.sent, report.failures)
    schedule(channel, delay_seconds=0 if report.more else delivery.get_settings().worker_poll_seconds)
    # Each round leaves a result row; the finished ones of an hour ago are of no more use.
    DBTaskResult.objects.filter(task_path=_PATH, finished_at__lt=timezone.now() - KEEP_RESULTS).delete()
    return {"users": report.users, "sent": report.sent, "failures": report.failures}


_PATH = deliver_due.module_path


def schedule(channel: str, *, delay_seconds: float) -> None:
    """Enqueue the channel's next round unless one is waiting already (a race leaves two, which is harmless:
    a user's work is claimed under a row lock)."""
    waiting = DBTaskResult.objects.filter(task_path=_PATH, status=TaskResultStatus.READY).values_list("args_kwargs", flat=True)
    if any(a.get("args") == [channel] for a in waiting):
        return
    deliver_due.using(run_after=timezone.now() + timedelta(seconds=delay_seconds)).enqueue(channel)
