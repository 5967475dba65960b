import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications import selectors, services
from notifications.errors import ServiceError
from notifications.models import Topic
from notifications.rules import UnsafeUrl, safe_url


class Command(BaseCommand):
    help = "Publish a notification to users, or with --topic alone to that topic's subscribers; prints the seqs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("usernames", nargs="*")
        parser.add_argument("--title", required=True)
        parser.add_argument("--body", default="")
        parser.add_argument("--topic", help="topic slug")
        parser.add_argument("--data", default="{}", help="a JSON object")
        parser.add_argument("--url", default="")
        parser.add_argument("--level", default="info", choices=["info", "success", "warning", "error"])

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = json.loads(options["data"])
        except json.JSONDecodeError as e:
            raise CommandError(f"--data is not JSON: {e}") from e
        if not isinstance(data, dict):
            raise CommandError("--data must be a JSON object")
        try:
            url = safe_url(options["url"])
        except UnsafeUrl as e:
            raise CommandError(f"--url {e}") from e
        topic = None
        if options["topic"]:
            topic = Topic.objects.filter(slug=options["topic"]).first()
            if topic is None:
                raise CommandError(f"no topic {options['topic']!r}")
        content = services.Content(
            title=options["title"], body=options["body"], data=data, url=url, level=options["level"],
            topic_id=topic.id if topic else None,
        )  # fmt: skip
        try:
            if options["usernames"]:
                result = services.notify(recipient_ids=self._user_ids(options["usernames"]), content=content)
            elif topic is not None:
                result = services.publish_to_topic(topic=topic, content=content)
            else:
                raise CommandError("name at least one username, or --topic")
        except ServiceError as e:
            raise CommandError(e.message) from e
        for d in result.deliveries:
            self.stdout.write(f"user {d.recipient_id} seq {d.seq} id {d.id}")

    def _user_ids(self, usernames: list[str]) -> list[int]:
        found = selectors.active_user_ids(usernames)
        missing = [u for u in usernames if u not in found]
        if missing:
            raise CommandError(f"no such active user: {', '.join(missing)}")
        return [found[u] for u in usernames]
