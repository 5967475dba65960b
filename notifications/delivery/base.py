"""The away channels' seam: one small interface, one module per channel (email.py, webpush.py).

A channel is handed a user's due notifications and says which it sent; what is
due, preferences, claiming and recording are services/away.py's. Adding SMS or
mobile push is one more module implementing `Backend`, registered in __init__.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.conf import settings as django_settings
from django.db.models import QuerySet

from ..fields import Action
from ..models import UserStream


@dataclass(frozen=True)
class AwaySettings:
    public_url: str
    email_delay_seconds: int
    email_digest_seconds: int
    push_delay_seconds: int
    push_ttl_seconds: int
    vapid_public_key: str
    vapid_private_key: str
    vapid_subject: str
    push_endpoint_hosts: tuple[str, ...]
    push_max_subscriptions: int
    push_timeout_seconds: float
    push_concurrency: int
    worker_poll_seconds: float
    worker_lost_seconds: int


def get_settings() -> AwaySettings:
    raw = getattr(django_settings, "AWAY", {})
    return AwaySettings(
        public_url=raw.get("PUBLIC_URL", "http://localhost:8000"),
        email_delay_seconds=raw.get("EMAIL_DELAY_SECONDS", 600),
        email_digest_seconds=raw.get("EMAIL_DIGEST_SECONDS", 300),
        push_delay_seconds=raw.get("PUSH_DELAY_SECONDS", 30),
        push_ttl_seconds=raw.get("PUSH_TTL_SECONDS", 86400),
        vapid_public_key=raw.get("VAPID_PUBLIC_KEY", ""),
        vapid_private_key=raw.get("VAPID_PRIVATE_KEY", ""),
        vapid_subject=raw.get("VAPID_SUBJECT", "mailto:admin@localhost"),
        push_endpoint_hosts=tuple(h.lower() for h in raw.get("PUSH_ENDPOINT_HOSTS", ())),
        push_max_subscriptions=raw.get("PUSH_MAX_SUBSCRIPTIONS", 10),
        push_timeout_seconds=raw.get("PUSH_TIMEOUT_SECONDS", 10.0),
        push_concurrency=raw.get("PUSH_CONCURRENCY", 8),
        worker_poll_seconds=raw.get("WORKER_POLL_SECONDS", 2.0),
        worker_lost_seconds=raw.get("WORKER_LOST_SECONDS", 900),
    )


@dataclass(frozen=True)
class Recipient:
    id: int
    username: str
    email: str


@dataclass(frozen=True)
class Item:
    """A due notification, as a channel needs it: its columns of these names (services/away.py reads them by name)."""

    id: int
    seq: int
    title: str
    body: str
    url: str
    level: str
    kind: str
    topic: str | None
    created_at: datetime
    category: str = ""  # the one its unsubscribe link turns off: topic:<slug>, else kind:<kind>
    category_label: str = ""  # what a person reads for it (services.preferences.category_label)
    actions: Sequence[Action] = ()
    group_key: str = ""


@dataclass
class Outcome:
    """What a send did: `sent` ids went out, `dropped` ids reached no device for good (gone, refused);
    `retry` means a transient failure stopped the batch there (the rest is tried later)."""

    sent: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    retry: bool = False
    error: str = ""


class Backend(Protocol):
    name: str
    # Email gathers a window's due notifications in one message; push sends each one.
    digest: bool

    def delay_seconds(self, config: AwaySettings) -> int:
        """The default wait after publish before an unacked, unread notification is due here."""

    def concurrency(self, config: AwaySettings) -> int:
        """How many users a round serves at once (each in a thread with its own transaction)."""

    def reachable(self, streams: QuerySet[UserStream]) -> QuerySet[UserStream]:
        """The streams of users this channel can reach at all (an address, a subscription)."""

    def send(self, *, recipient: Recipient, items: list[Item], config: AwaySettings) -> Outcome:
        """Send items (oldest first); never raises for a delivery failure: says so in the Outcome."""


def categories(kind: str, topic: str | None) -> list[str]:
    """Every category a notification falls in, most specific first (its topic, its kind's prefixes, then "")."""
    return [f"topic:{topic}", *wider(f"kind:{kind}")] if topic else wider(f"kind:{kind}")


def wider(category: str) -> list[str]:
    """A category and the wider ones it is in, most specific first: "kind:a.b" -> ["kind:a.b", "kind:a", ""]."""
    prefix, _, name = category.partition(":")
    if prefix != "kind":
        return [category, ""] if category else [""]
    parts = name.split(".")
    return [*(f"kind:{'.'.join(parts[:n])}" for n in range(len(parts), 0, -1)), ""]


def natural_category(kind: str, topic: str | None) -> str:
    return f"topic:{topic}" if topic else f"kind:{kind}"
