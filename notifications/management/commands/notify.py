import json
from typing import Any, Literal, get_args, get_origin

from django.core.management.base import BaseCommand, CommandError, CommandParser
from pydantic.fields import FieldInfo

from notifications import selectors, services
from notifications.errors import ServiceError
from notifications.fields import Content, ContentFields
from notifications.models import Topic


def _option(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _is_json(info: FieldInfo) -> bool:
    """A field given as JSON on the command line (data, actions)."""
    return get_origin(info.annotation) in (dict, list) or any(get_origin(a) in (dict, list) for a in get_args(info.annotation))


def _choices(info: FieldInfo) -> tuple[str, ...] | None:
    return get_args(info.annotation) if get_origin(info.annotation) is Literal else None


def _where(path: str) -> str:
    """A field's path as the command line names it: actions.0.id -> --actions[0].id"""
    name, *rest = path.split(".")
    return _option(name) + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in rest)


class Command(BaseCommand):
    help = (
        "Publish a notification to users, or with --topic alone to that topic's subscribers; prints the seqs. "
        "Every field a publisher sets is an option (the API's, with its rules); --data and --actions take JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("usernames", nargs="*")
        parser.add_argument("--topic", help="topic slug")
        for name, info in ContentFields.model_fields.items():  # one option per field a publisher sets (fields.py)
            parser.add_argument(_option(name), dest=name, required=info.is_required(), choices=_choices(info), help=info.description)

    def handle(self, *args: Any, **options: Any) -> None:
        values: dict[str, Any] = {}
        for name, info in ContentFields.model_fields.items():
            if options.get(name) is None:
                continue
            values[name] = options[name]
            if _is_json(info):
                try:
                    values[name] = json.loads(options[name])
                except json.JSONDecodeError as e:
                    raise CommandError(f"{_option(name)} is not JSON: {e}") from e
        topic = None
        if options["topic"]:
            topic = Topic.objects.filter(slug=options["topic"]).first()
            if topic is None:
                raise CommandError(f"no topic {options['topic']!r}")
        try:
            content = Content.checked(**values, topic_id=topic.id if topic else None)
        except ServiceError as e:
            raise CommandError("; ".join(f"{_where(path)}: {message}" for path, message in e.fields.items())) from e
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
