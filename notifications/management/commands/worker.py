"""`python manage.py worker`: send the away channels' due work (email digests, Web Push) and webhooks, and wake snoozes.

django-tasks' database worker runs the rounds and the wakes (notifications/tasks.py); this
first recovers the rounds of workers that died mid-round, makes sure each channel
and the webhooks have their round waiting, sweeps up overdue snoozes, and keeps recovering
lost rounds every --recover-interval seconds while it runs. Several may run at once;
`--queues` gives webhooks workers of their own (a slow receiver then holds up no email).

A round runs every NOTIFY_WORKER_POLL_SECONDS per channel, and django-tasks logs the
start and the end of every task at INFO: an idle worker would log two lines a second.
Those go to DEBUG here; a round that sent or failed something logs itself (tasks.py).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from notifications import tasks
from notifications.models import Channel
from notifications.services import snooze

log = logging.getLogger(__name__)
CONSOLE_EMAIL = "django.core.mail.backends.console.EmailBackend"


class _TaskRunsAtDebug(logging.Filter):
    """django-tasks' per-task INFO lines ("Task id=… state=RUNNING/SUCCESSFUL"), demoted to DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class Command(BaseCommand):
    help = "Run the worker: away channels (email digests and Web Push), snooze wakes and webhooks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between looks at an empty queue")
        parser.add_argument("--channels", default=",".join(Channel.values), help="comma-separated channels to start rounds for")
        parser.add_argument("--recover-interval", type=float, default=30.0, help="seconds between looks for rounds of lost workers")
        parser.add_argument(
            "--queues", default=",".join(tasks.QUEUES), help=f"comma-separated queues to run, from: {', '.join(tasks.QUEUES)}"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("django_tasks").addFilter(_TaskRunsAtDebug())
        queues = [q.strip() for q in options["queues"].split(",") if q.strip()]
        if not queues or set(queues) - set(tasks.QUEUES):
            raise CommandError(f"--queues must name some of: {', '.join(tasks.QUEUES)}")
        if settings.EMAIL_BACKEND == CONSOLE_EMAIL and tasks.QUEUE in queues:
            log.warning(
                "EMAIL_URL is not set: email digests are PRINTED TO THIS LOG, NOT SENT. "
                "Set EMAIL_URL=smtp://user:pass@host:587 (or smtp+tls://, smtps://) to send them."
            )
        me = tasks.new_worker_id()
        tasks.recover_lost(me=me)
        if tasks.QUEUE in queues:
            for channel in options["channels"].split(","):
                tasks.schedule(Channel(channel.strip()), delay_seconds=0)
            snooze.sweep_later()
        if tasks.WEBHOOK_QUEUE in queues:
            tasks.schedule_webhooks(delay_seconds=0)
        # A thread, as db_worker's loop has no hook to run anything between tasks; a daemon one,
        # so it ends with the process however db_worker stops.
        threading.Thread(target=_recover_every, args=(me, options["recover_interval"]), name="recover-lost", daemon=True).start()
        call_command(
            "db_worker", queue_name=",".join(queues), interval=options["interval"], reload=False, startup_delay=False, worker_id=me
        )


def _recover_every(me: str, seconds: float) -> None:
    while True:
        time.sleep(seconds)  # a timer, not a wait for an event
        try:
            tasks.recover_lost(me=me)
        except DatabaseError:
            log.warning("could not look for lost rounds; trying again in %s s", seconds, exc_info=True)
        finally:
            connections.close_all()  # this thread's: a database restart must not leave it a dead one
