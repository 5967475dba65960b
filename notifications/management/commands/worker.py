"""`python manage.py worker`: send the away channels' due work (email digests, Web Push).

django-tasks' database worker runs the rounds (notifications/tasks.py); this
makes sure each channel has its round waiting first. Several may run at once.
"""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from notifications import tasks
from notifications.models import Channel


class Command(BaseCommand):
    help = "Run the away-channel worker (email digests and Web Push)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between looks at an empty queue")
        parser.add_argument("--channels", default=",".join(Channel.values), help="comma-separated channels to start rounds for")

    def handle(self, *args: Any, **options: Any) -> None:
        for channel in options["channels"].split(","):
            tasks.schedule(Channel(channel.strip()), delay_seconds=0)
        call_command("db_worker", queue_name=tasks.QUEUE, interval=options["interval"], reload=False, startup_delay=False)
