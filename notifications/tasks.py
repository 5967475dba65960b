"""The worker's tasks on django-tasks (database backend, docs/decisions/0008-away-channels-task-engine.md).

One `deliver_due` task per away channel, and one `deliver_webhooks` task, is
ever waiting: each run does a round of due work found by query
(services/away.py, services/webhook_sends.py) and enqueues the next, at once
when there was more, else after the poll interval. The publish path enqueues
nothing.

django-tasks-db has no notion of a lost worker: a worker killed mid-round leaves
its row RUNNING for ever, and as each round enqueues the next, that channel's
chain stops with it. `recover_lost` (run by `manage.py worker` on start and
every few seconds) marks such a row failed through the library's own
`set_failed` and enqueues the channel's next round, so the work is retried once.
That retry sends nothing twice: a killed round's sends were never recorded, and
its user locks went with its database connection (services/away.py). A killed
webhook round's message locks went the same way: their messages are sent again,
with the same webhook-id (services/webhook_sends.py).

Snoozes are woken on the away queue (services/snooze.py defines those tasks): a lost
wake, like a worker's start, enqueues a sweep of every overdue snooze.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tasks import TaskResultStatus, task
from django_tasks_db.models import DBTaskResult

from . import conf, delivery, services
from .services import snooze

log = logging.getLogger(__name__)
QUEUE = conf.TASK_QUEUE
WEBHOOK_QUEUE = "webhooks"
QUEUES = (QUEUE, WEBHOOK_QUEUE)
KEEP_RESULTS = timedelta(hours=1)


class WorkerLost(Exception):
    """What a lost round's row records as its failure: its worker stopped without finishing it."""


@task(queue_name=QUEUE)
def deliver_due(channel: str) -> dict[str, int]:
    more = False
    try:
        report = services.deliver_due(channel=channel)
        more = report.more
        # Idle rounds (every poll interval, per channel) stay out of an INFO log.
        level = logging.INFO if report.sent or report.failures else logging.DEBUG
        log.log(level, "away round on %s: %d user(s), %d sent, %d failed", channel, report.users, report.sent, report.failures)
    finally:
        # The next round comes even after one that failed: a failure must not end the channel for everyone.
        schedule(channel, delay_seconds=0 if more else delivery.get_settings().worker_poll_seconds)
    _forget_finished(_PATH, *snooze.WAKE_PATHS)  # each round and wake leaves a result row
    return {"users": report.users, "sent": report.sent, "failures": report.failures}


@task(queue_name=WEBHOOK_QUEUE)
def deliver_webhooks() -> dict[str, int]:
    more = False
    try:
        report = services.deliver_webhooks()
        more = report.more
        level = logging.INFO if report.attempts or report.errors else logging.DEBUG
        log.log(level, "webhook round: %s, %d error(s)", {r.value: n for r, n in report.results.items()}, report.errors)
    finally:
        schedule_webhooks(delay_seconds=0 if more else delivery.get_settings().worker_poll_seconds)
    _forget_finished(_WEBHOOKS_PATH)
    return {"attempts": report.attempts, "errors": report.errors}


_PATH = deliver_due.module_path
_WEBHOOKS_PATH = deliver_webhooks.module_path


def _forget_finished(*paths: str) -> None:
    # Each round leaves a result row; the finished ones of an hour ago are of no more use.
    DBTaskResult.objects.filter(task_path__in=paths, finished_at__lt=timezone.now() - KEEP_RESULTS).delete()


def schedule(channel: str, *, delay_seconds: float) -> None:
    """Enqueue the channel's next round unless one is waiting already (a race leaves two, which is harmless:
    a user's work is claimed under a row lock)."""
    waiting = DBTaskResult.objects.filter(task_path=_PATH, status=TaskResultStatus.READY).values_list("args_kwargs", flat=True)
    if any(a.get("args") == [channel] for a in waiting):
        return
    deliver_due.using(run_after=timezone.now() + timedelta(seconds=delay_seconds)).enqueue(channel)


def schedule_webhooks(*, delay_seconds: float) -> None:
    """Enqueue the next webhook round unless one is waiting already (two are harmless: messages are claimed
    under row locks)."""
    if DBTaskResult.objects.filter(task_path=_WEBHOOKS_PATH, status=TaskResultStatus.READY).exists():
        return
    deliver_webhooks.using(run_after=timezone.now() + timedelta(seconds=delay_seconds)).enqueue()


def new_worker_id() -> str:
    """A worker's id in the rows it runs: host and pid, so a worker on the same host can tell when it is gone
    (django-tasks-db allows 64 characters)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{get_random_string(12)}"


def recover_lost(*, me: str, now: datetime | None = None) -> int:
    """Fail each RUNNING row of our queues whose worker is gone, and enqueue its next round (or a snooze sweep).

    Gone: a worker on this host whose process no longer exists (or whose pid is now `me`'s, after a
    container restart), or any row that has been running for WORKER_LOST_SECONDS, wherever it ran."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=delivery.get_settings().worker_lost_seconds)
    lost = 0
    with transaction.atomic():
        for row in DBTaskResult.objects.running().filter(queue_name__in=QUEUES).select_for_update(skip_locked=True):
            if not _lost(row, me=me, cutoff=cutoff):
                continue
            row.set_failed(WorkerLost(f"worker {row.worker_ids[-1] if row.worker_ids else '?'} stopped mid-round"))
            if row.task_path == _PATH:
                schedule(*row.args_kwargs["args"], delay_seconds=0)
            elif row.task_path == _WEBHOOKS_PATH:
                schedule_webhooks(delay_seconds=0)
            elif row.task_path in snooze.WAKE_PATHS:
                snooze.sweep_later()
            lost += 1
    return lost


def _lost(row: DBTaskResult, *, me: str, cutoff: datetime) -> bool:
    if row.started_at is None or row.started_at < cutoff:
        return True
    worker = row.worker_ids[-1] if row.worker_ids else ""
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    if host != me.partition(":")[0] or not pid.isdigit():
        return False  # another host's: only the age bound can tell
    if int(pid) == os.getpid():
        return worker != me
    return not _process_exists(int(pid))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: no signal, only the check
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process has that pid now
    return True
