"""Web Push: a small payload per notification, encrypted per RFC 8291 with VAPID (pywebpush).

What a subscription may be (subscription.py) is checked when a browser
subscribes and again before each send: a subscription must never make the
server call an arbitrary URL, and one that cannot be used (a broken key, an
endpoint refused since, a 4xx of its own) is deleted and logged, never retried.
404/410 means it is gone (deleted too); 429, 5xx and network errors are
transient (the service backs off). One user's subscriptions are sent to at once,
each request bounded by NOTIFY_PUSH_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from itertools import repeat

import requests
from django.db.models import Exists, OuterRef, QuerySet
from django.urls import reverse
from pywebpush import WebPushException, webpush

from .. import rules
from ..models import Channel, PushSubscription, UserStream
from .action_links import action_token
from .base import Action, AwaySettings, Item, Outcome, Recipient
from .subscription import subscription_refusal

log = logging.getLogger(__name__)

MAX_PAYLOAD_URL = 1000
MAX_PAYLOAD_ACTION_URL = 300  # each of up to 3 buttons': with the rest, well under the ~4 KB a push service takes


def payload(item: Item, user_id: int | None = None) -> str:
    """What the service worker shows: kept small (push services cap it near 4 KB). The url is a link by the
    server's rule (rules.link) or none, never cut: a cut URL would be another address.

    `actions` become the notification's buttons (sw.js): one with a url opens it, one without is an answer,
    with the signed `token` sw.js POSTs to the one-click answer (action_links.py) when `user_id` is given.
    """
    url = rules.link(item.url)
    url = url if len(url) <= MAX_PAYLOAD_URL else ""
    actions = [_action(a, item.seq, user_id) for a in item.actions]
    return json.dumps({"id": item.id, "seq": item.seq, "title": item.title[:200], "body": item.body[:300], "url": url, "actions": actions})


def _action(action: Action, seq: int, user_id: int | None) -> dict[str, str]:
    shown = {"id": action["id"], "label": action["label"], "url": _action_url(action.get("url", ""))}
    if not shown["url"] and user_id is not None:
        shown["token"] = action_token(user_id=user_id, seq=seq, action=action["id"])
    return shown


def _action_url(url: str) -> str:
    """A link button's url; one that is no link by the rule or too long for the payload opens the inbox instead
    (where the notification and its button are): never cut, and never turned into an answer."""
    if not url:
        return ""
    link = rules.link(url)
    return link if link and len(link) <= MAX_PAYLOAD_ACTION_URL else reverse("inbox")


class Result(Enum):
    OK = "ok"
    DROP = "drop"  # gone (404/410) or unusable for a reason of its own: the subscription is deleted
    TRANSIENT = "transient"


def push_one(subscription: PushSubscription, item: Item, config: AwaySettings, session: requests.Session) -> Result:
    refusal = subscription_refusal(subscription.endpoint, subscription.p256dh, subscription.auth, config.push_endpoint_hosts)
    if refusal:
        log.warning("push subscription %s dropped, not called: %s", subscription.pk, refusal)
        return Result.DROP
    info = {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}}
    try:
        webpush(
            info, data=payload(item, subscription.user_id), vapid_private_key=config.vapid_private_key,
            vapid_claims={"sub": config.vapid_subject},
            ttl=config.push_ttl_seconds, timeout=config.push_timeout_seconds, requests_session=session,
            # Topic: a resend after a crash replaces the undelivered copy at the push service.
            headers={"Urgency": "normal", "Topic": f"n{item.id}"},
        )  # fmt: skip
    except WebPushException as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (404, 410):
            return Result.DROP
        if status == 429 or status >= 500 or status == 0:
            log.warning("push to subscription %s failed for now: %s", subscription.pk, exc)
            return Result.TRANSIENT
        log.warning("push subscription %s dropped: the push service answered %s", subscription.pk, status)
        return Result.DROP
    except requests.RequestException as exc:
        log.warning("push to subscription %s failed: %s", subscription.pk, exc)
        return Result.TRANSIENT
    except Exception:
        # Not the subscription's fault (its keys and endpoint passed above): a bad VAPID key, say. Retried
        # with backoff and logged, and it never takes the round (other subscriptions, other users) down.
        log.exception("push to subscription %s failed", subscription.pk)
        return Result.TRANSIENT
    return Result.OK


class WebPushBackend:
    name: str = Channel.WEBPUSH
    digest = False

    def delay_seconds(self, config: AwaySettings) -> int:
        return config.push_delay_seconds

    def concurrency(self, config: AwaySettings) -> int:
        return config.push_concurrency

    def reachable(self, streams: QuerySet[UserStream]) -> QuerySet[UserStream]:
        return streams.filter(Exists(PushSubscription.objects.filter(user_id=OuterRef("user_id"))))

    def send(self, *, recipient: Recipient, items: list[Item], config: AwaySettings) -> Outcome:
        """Each item to every subscription at once; an item counts as sent once any device took it (at most once
        per channel), and one that no device took for a transient reason stops the batch to be tried later."""
        if not config.vapid_private_key:
            return Outcome(retry=True, error="NOTIFY_VAPID_PRIVATE_KEY is not set")
        # The newest ones, as many as a user may have: rows stored before the cap are not all sent to.
        subscriptions = list(
            PushSubscription.objects.filter(user_id=recipient.id).order_by("-created_at", "-id")[: config.push_max_subscriptions]
        )
        outcome = Outcome()
        workers = max(1, min(len(subscriptions), config.push_concurrency))
        with requests.Session() as session, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webpush") as pool:
            for item in items:
                answers = pool.map(push_one, subscriptions, repeat(item), repeat(config), repeat(session))
                results = dict(zip((s.pk for s in subscriptions), answers, strict=True))
                dropped = [pk for pk, r in results.items() if r is Result.DROP]
                if dropped:
                    PushSubscription.objects.filter(pk__in=dropped).delete()
                    subscriptions = [s for s in subscriptions if s.pk not in dropped]
                if Result.OK in results.values():
                    outcome.sent.append(item.id)
                elif Result.TRANSIENT not in results.values():
                    outcome.dropped.append(item.id)
                else:
                    outcome.retry, outcome.error = True, "push service unavailable"
                    break
        return outcome
