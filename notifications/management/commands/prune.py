from typing import Any

from django.core.management.base import BaseCommand

from notifications import conf, services


class Command(BaseCommand):
    help = "Delete expired notifications, and notifications and finished webhook messages older than NOTIFY_RETENTION_DAYS."

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = services.prune()
        self.stdout.write(f"pruned {deleted} notifications (retention {conf.get().retention_days} days)")
        self.stdout.write(f"pruned {services.webhooks.prune()} finished webhook messages and attempts")
