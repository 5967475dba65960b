"""Web Push: a small payload per notification, encrypted per RFC 8291 with VAPID (pywebpush).

Endpoints are https on an allow-list of push-service hosts, checked when a
browser subscribes and again before each send: a subscription must never make
the server call an arbitrary URL. 404/410 means the subscription is gone (it is
deleted); 429, 5xx and network errors are transient (the service backs off).
"""

from __future__ import annotations

import json
import logging
from enum import Enum
from urllib.parse import urlsplit

import requests
from django.db.models import Exists, OuterRef, QuerySet
from pywebpush import WebPushException, webpush

from ..models import Channel, PushSubscription, UserStream
from .base import AwaySettings, Item, Outcome, Recipient

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10


def endpoint_allowed(endpoint: str, hosts: tuple[str, ...]) -> bool:
    """https, no credentials, and a host on the allow-list ("*.example.com" takes its subdomains)."""
    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    if parts.scheme != "https" or not host or parts.username or parts.password:
        return False
    return any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in hosts)


def payload(item: Item) -> str:
    """What the service worker shows: kept small (push services cap it near 4 KB)."""
    return json.dumps({"id": item.id, "seq": item.seq, "title": item.title[:200], "body": item.body[:300], "url": item.url[:1000]})


class Result(Enum):
    OK = "ok"
    GONE = "gone"
    TRANSIENT = "transient"
    REFUSED = "refused"


def push_one(subscription: PushSubscription, item: Item, config: AwaySettings, session: requests.Session) -> Result:
    if not endpoint_allowed(subscription.endpoint, config.push_endpoint_hosts):
        return Result.REFUSED
    info = {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}}
    try:
        webpush(
            info, data=payload(item), vapid_private_key=config.vapid_private_key, vapid_claims={"sub": config.vapid_subject},
            ttl=config.push_ttl_seconds, timeout=TIMEOUT_SECONDS, requests_session=session,
            # Topic: a resend after a crash replaces the undelivered copy at the push service.
            headers={"Urgency": "normal", "Topic": f"n{item.id}"},
        )  # fmt: skip
    except WebPushException as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (404, 410):
            return Result.GONE
        if status == 429 or status >= 500 or status == 0:
            return Result.TRANSIENT
        log.warning("push refused with %s for subscription %s", status, subscription.pk)
        return Result.REFUSED
    except requests.RequestException as exc:
        log.warning("push to subscription %s failed: %s", subscription.pk, exc)
        return Result.TRANSIENT
    return Result.OK


class WebPushBackend:
    name: str = Channel.WEBPUSH
    digest = False

    def delay_seconds(self, config: AwaySettings) -> int:
        return config.push_delay_seconds

    def reachable(self, streams: QuerySet[UserStream]) -> QuerySet[UserStream]:
        return streams.filter(Exists(PushSubscription.objects.filter(user_id=OuterRef("user_id"))))

    def send(self, *, recipient: Recipient, items: list[Item], config: AwaySettings) -> Outcome:
        """Each item to every subscription; an item counts as sent once any device took it (at most once per
        channel), and one that no device took for a transient reason stops the batch to be tried later."""
        if not config.vapid_private_key:
            return Outcome(retry=True, error="NOTIFY_VAPID_PRIVATE_KEY is not set")
        subscriptions = list(PushSubscription.objects.filter(user_id=recipient.id).order_by("id"))
        outcome = Outcome()
        with requests.Session() as session:
            for item in items:
                results = {s.pk: push_one(s, item, config, session) for s in subscriptions}
                gone = [pk for pk, r in results.items() if r is Result.GONE]
                if gone:
                    PushSubscription.objects.filter(pk__in=gone).delete()
                    subscriptions = [s for s in subscriptions if s.pk not in gone]
                if Result.OK in results.values():
                    outcome.sent.append(item.id)
                elif Result.TRANSIENT not in results.values():
                    outcome.dropped.append(item.id)
                else:
                    outcome.retry, outcome.error = True, "push service unavailable"
                    break
        return outcome
