from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from notifications.models import Subscription, Topic


class Command(BaseCommand):
    help = "On a DEBUG install with no users yet, create admin/admin, alice/alice and an 'announcements' topic."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if not settings.DEBUG or User.objects.exists():
            return
        User.objects.create_superuser("admin", "admin@example.com", "admin")
        alice = User.objects.create_user("alice", "alice@example.com", "alice")
        topic = Topic.objects.create(slug="announcements", title="Announcements", description="News for everyone")
        Subscription.objects.create(user=alice, topic=topic)
        self.stdout.write("==> demo users: admin/admin (staff) and alice/alice; topic 'announcements'")
