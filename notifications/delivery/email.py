"""Email: one digest per user per window, text and HTML from templates, one-click unsubscribe (RFC 8058).

The unsubscribe link carries a signed token naming the user and categories, so
it works without logging in and cannot be forged for anyone else. An action to
answer gets a one-click link signed the same way (action_links.py).
"""

from __future__ import annotations

import logging
import smtplib
from typing import Any
from urllib.parse import urlencode

from django.core import signing
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.urls import reverse

from .. import rules
from ..models import Channel, UserStream
from .action_links import action_token, action_url, answers
from .base import AwaySettings, Item, Outcome, Recipient

log = logging.getLogger(__name__)

_SALT = "notifications.unsubscribe"


def unsubscribe_token(*, user_id: int, categories: list[str]) -> str:
    return signing.dumps({"u": user_id, "c": sorted(set(categories))}, salt=_SALT, compress=True)


def read_unsubscribe_token(token: str) -> tuple[int, list[str]] | None:
    """(user id, categories) from a token we signed, or None for anything else."""
    try:
        value = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("u"), int) or not isinstance(value.get("c"), list):
        return None
    return value["u"], [str(c) for c in value["c"]]


def unsubscribe_url(config: AwaySettings, token: str) -> str:
    return f"{config.public_url}{reverse('unsubscribe')}?{urlencode({'token': token})}"


def _link(config: AwaySettings, url: str) -> str:
    """Each item links to its own URL when it is absolute, else to the dashboard (a path is the dashboard's)."""
    safe = rules.link(url)
    if safe.startswith(("http://", "https://")):
        return safe
    return f"{config.public_url}{safe or reverse('inbox')}"


def _entries(config: AwaySettings, user_id: int, newest_first: list[Item]) -> list[dict[str, Any]]:
    """One entry per notification, except that a group (a group_key) is one entry: its newest, and how many it stands for.
    `answers`: (label, one-click link) for each of the entry's actions to answer."""
    entries: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for item in newest_first:
        if item.group_key in groups:
            groups[item.group_key]["more"] += 1
            continue
        links = [
            (a["label"], action_url(config.public_url, action_token(user_id=user_id, seq=item.seq, action=a["id"])))
            for a in answers(item.actions)
        ]
        entry = {"item": item, "link": _link(config, item.url), "more": 0, "answers": links}
        entries.append(entry)
        if item.group_key:
            groups[item.group_key] = entry
    return entries


def build_digest(*, recipient: Recipient, items: list[Item], config: AwaySettings) -> EmailMultiAlternatives:
    newest_first = sorted(items, key=lambda i: i.seq, reverse=True)
    categories = sorted({i.category for i in items})
    everything = unsubscribe_url(config, unsubscribe_token(user_id=recipient.id, categories=categories))
    labels = {i.category: i.category_label or i.category for i in items}
    per_category = {labels[c]: unsubscribe_url(config, unsubscribe_token(user_id=recipient.id, categories=[c])) for c in categories}
    context = {
        "recipient": recipient,
        "items": _entries(config, recipient.id, newest_first),
        "count": len(items),
        "newest": newest_first[0],
        "inbox_url": f"{config.public_url}{reverse('inbox')}",
        "preferences_url": f"{config.public_url}{reverse('preferences')}",
        "unsubscribe_url": everything,
        "category_links": sorted(per_category.items()),  # (label, link)
    }
    subject = " ".join(render_to_string("notifications/email/digest_subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("notifications/email/digest.txt", context),
        to=[recipient.email],
        headers={"List-Unsubscribe": f"<{everything}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    message.attach_alternative(render_to_string("notifications/email/digest.html", context), "text/html")
    return message


class EmailBackend:
    name: str = Channel.EMAIL
    digest = True

    def delay_seconds(self, config: AwaySettings) -> int:
        return config.email_delay_seconds

    def concurrency(self, config: AwaySettings) -> int:
        return 1  # one digest at a time: a mail server is one relay, not one per user

    def reachable(self, streams: QuerySet[UserStream]) -> QuerySet[UserStream]:
        return streams.exclude(user__email="")

    def send(self, *, recipient: Recipient, items: list[Item], config: AwaySettings) -> Outcome:
        message = build_digest(recipient=recipient, items=items, config=config)
        try:
            get_connection(fail_silently=False).send_messages([message])
        except (smtplib.SMTPException, OSError) as exc:
            # Nothing is recorded: the digest is tried again after a back-off.
            log.warning("digest to user %s not sent: %s", recipient.id, exc)
            return Outcome(retry=True, error=str(exc)[:200])
        return Outcome(sent=[i.id for i in items])
