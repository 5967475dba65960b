from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications import auth, users
from notifications.errors import ServiceError
from notifications.models import Scope


class Command(BaseCommand):
    help = "Issue an API token for USERNAME and print its secret once (only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user's login (the user model's USERNAME_FIELD: a username, an email...)")
        parser.add_argument("--scopes", default="publish,read", help="comma-separated, from: " + ", ".join(Scope.values))
        parser.add_argument("--name", default="", help="what the token is for")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model()._default_manager.filter(**{users.login_field(): options["username"]}).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}")
        try:
            issued = auth.issue_token(user=user, scopes=options["scopes"].split(","), name=options["name"])
        except ServiceError as e:
            raise CommandError(e.message) from e
        self.stdout.write(issued.secret)
