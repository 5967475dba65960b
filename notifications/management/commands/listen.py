import asyncio
import contextlib
import json
import os
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications import auth, users
from notifications.client import Listener, ListenerClosed, Notification, ws_url_for


class Command(BaseCommand):
    help = (
        "Print USERNAME's notifications live from a running server (a new single-use ticket per connection; "
        "reconnects and resumes on its own). Ctrl-C stops it and prints the cursor to resume from."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--url", default=os.environ.get("NOTIFY_URL", "http://127.0.0.1:8000"), help="the server (env NOTIFY_URL)")
        parser.add_argument("--since", type=int, default=None, help="replay everything after this seq first")
        parser.add_argument("--count", type=int, default=None, help="exit after this many notifications")
        parser.add_argument("--json", action="store_true", help="one JSON object per line")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model()._default_manager.filter(**{users.login_field(): options["username"], "is_active": True}).first()
        if user is None:
            raise CommandError(f"no active user {options['username']!r}")
        try:
            asyncio.run(self._listen(user, options))
        except KeyboardInterrupt:
            pass
        except ListenerClosed as e:
            raise CommandError(str(e)) from e

    async def _listen(self, user: Any, options: dict[str, Any]) -> None:
        async def ticket() -> str:
            return await sync_to_async(auth.issue_ticket)(user=user)

        def on_event(frame: dict[str, Any]) -> None:
            if frame["type"] == "welcome":
                self._err(f"-- live as {user.get_username()}: head_seq {frame['head_seq']}, unread {frame['unread']}")
            elif frame["type"] == "state" and frame["state"] in {"offline", "connecting"}:
                self._err(f"-- {frame['state']}")
            elif frame["type"] == "reset":
                self._err(f"-- reset ({frame.get('reason')}): the cursor was older than retention; going on from {frame['head_seq']}")

        listener = Listener(ws_url_for(options["url"]), ticket=ticket, since=options["since"], on_event=on_event)
        seen = 0
        try:
            async with listener:
                async for n in listener:
                    self._print(n, as_json=options["json"])
                    seen += 1
                    if options["count"] is not None and seen >= options["count"]:
                        break
        finally:
            with contextlib.suppress(Exception):
                self._err(f"-- stopped at seq {listener.consumed} (resume with --since {listener.consumed})")

    def _print(self, n: Notification, *, as_json: bool) -> None:
        if as_json:
            line = json.dumps(n.__dict__, ensure_ascii=False)
        else:
            topic = f" #{n.topic}" if n.topic else ""
            body = f" — {n.body}" if n.body else ""
            url = f" <{n.url}>" if n.url else ""
            line = f"{n.seq:>6} [{n.level}]{topic} {n.title}{body}{url}"
        self.stdout.write(line)
        self.stdout.flush()

    def _err(self, line: str) -> None:
        self.stderr.write(line)
        self.stderr.flush()
