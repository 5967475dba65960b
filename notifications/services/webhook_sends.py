"""The worker's side of webhooks: POST what is due, signed; record each attempt; retry with backoff; give up after the last.

A message is claimed by locking its row (SKIP LOCKED: several workers share the
outbox, never one message) in a transaction that stays open while its POST is
in flight, and the attempt and the message's new state are written in it. A
worker killed mid-send therefore leaves no record: its row unlocks when its
database connection goes, still due, and the next round sends it again with
the same webhook-id. That is at least once; a receiver de-duplicates by
webhook-id, as the Standard Webhooks specification tells it to.

Signing is the `standardwebhooks` package's (the specification's own library):
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
keyed with the secret's base64 part. The timestamp is the attempt's, so a
receiver's tolerance window (five minutes in that library) holds on retries.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from itertools import chain, repeat, zip_longest

from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from .. import conf, outbound
from ..models import WebhookAttempt, WebhookMessage

log = logging.getLogger(__name__)

USER_AGENT = "notifications-webhooks/1"
ROUND_PER_WORKER = 4  # messages a round takes per request slot: a round of timeouts stays bounded


class Result(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GAVE_UP = "gave_up"
    CANCELLED = "cancelled"
    TAKEN = "taken"  # another worker had it, or it was no longer due


@dataclass
class Report:
    results: dict[Result, int] = field(default_factory=lambda: defaultdict(int))
    errors: int = 0
    more: bool = False

    @property
    def attempts(self) -> int:
        return sum(self.results.get(r, 0) for r in (Result.DELIVERED, Result.RETRY, Result.GAVE_UP))


def deliver_due(*, now: datetime | None = None) -> Report:
    """One round: up to NOTIFY_WEBHOOK_CONCURRENCY x ROUND_PER_WORKER due messages, that many at once,
    taken in turns across endpoints so one slow endpoint's backlog does not hold up the others'."""
    config = conf.webhooks()
    now = now or timezone.now()
    limit = config.concurrency * ROUND_PER_WORKER
    due = list(
        WebhookMessage.objects.filter(state=WebhookMessage.State.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", "endpoint_id")[:limit]
    )
    report = Report(more=len(due) == limit)
    ids = _in_turns(due)
    # SQLite takes its write lock at BEGIN (settings.py): sends at once would only queue for it.
    workers = 1 if connection.vendor == "sqlite" else min(config.concurrency, len(ids))
    if workers <= 1:
        results = [_attempt_safely(i, config, now) for i in ids]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhooks") as pool:
            results = list(pool.map(_in_thread, ids, repeat(config), repeat(now)))
    for result in results:
        if result is None:
            report.errors += 1
        else:
            report.results[result] += 1
    return report


def _in_turns(due: list[tuple[str, int]]) -> list[str]:
    """Message ids, one endpoint's after another's in turn, each endpoint's oldest first."""
    by_endpoint: dict[int, list[str]] = defaultdict(list)
    for message_id, endpoint_id in due:
        by_endpoint[endpoint_id].append(message_id)
    return [i for i in chain.from_iterable(zip_longest(*by_endpoint.values())) if i is not None]


def _in_thread(message_id: str, config: conf.WebhookSettings, now: datetime) -> Result | None:
    try:
        return _attempt_safely(message_id, config, now)
    finally:
        connection.close()  # this thread's own


def _attempt_safely(message_id: str, config: conf.WebhookSettings, now: datetime) -> Result | None:
    """One message's attempt; a failure of ours (the database) is logged and ends nothing else."""
    try:
        return attempt(message_id, config=config, now=now)
    except Exception:
        log.exception("webhook message %s: the attempt failed on our side", message_id)
        return None


def attempt(message_id: str, *, config: conf.WebhookSettings, now: datetime) -> Result:
    """Claim, send, record: one transaction."""
    with transaction.atomic():
        message = (
            WebhookMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=message_id, state=WebhookMessage.State.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if message is None:
            return Result.TAKEN
        endpoint = message.endpoint
        if endpoint.removed_at is not None or endpoint.disabled:
            _finish(message, WebhookMessage.State.CANCELLED)
            return Result.CANCELLED
        at = timezone.now().replace(microsecond=0)  # the signed timestamp is whole seconds
        body = message.body.encode()
        started = time.monotonic()
        status, error, excerpt = None, "", ""
        try:
            answer = outbound.post(
                endpoint.url, body, signed_headers(message.id, at, body, endpoint.secret),
                allow_private=config.allow_private, timeout=config.timeout_seconds, ca_file=config.ca_file,
            )  # fmt: skip
            status, excerpt = answer.status, answer.excerpt
        except outbound.SendFailed as exc:
            error = str(exc)
        took = time.monotonic() - started
        WebhookAttempt.objects.create(
            message=message, at=at, status_code=status, error=error[:300], duration_ms=round(took * 1000), response=excerpt[:500]
        )
        message.attempts += 1
        if status is not None and 200 <= status < 300:
            _finish(message, WebhookMessage.State.DELIVERED)
            return Result.DELIVERED
        if message.attempts > len(config.retry_seconds):
            log.warning("webhook message %s to endpoint %s given up after %d attempts", message.id, endpoint.pk, message.attempts)
            _finish(message, WebhookMessage.State.FAILED)
            return Result.GAVE_UP
        message.next_attempt_at = timezone.now() + timedelta(seconds=config.retry_seconds[message.attempts - 1])
        message.save(update_fields=["attempts", "next_attempt_at"])
        return Result.RETRY


def _finish(message: WebhookMessage, state: WebhookMessage.State) -> None:
    message.state, message.finished_at = state, timezone.now()
    message.save(update_fields=["attempts", "state", "finished_at"])


def signed_headers(message_id: str, at: datetime, body: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
    }
