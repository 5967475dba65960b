"""Webhooks: the service's endpoints, and `emit`, which puts an event in their outbox (docs/webhooks.md).

`emit` runs inside the transaction of the change it reports and writes one
WebhookMessage per endpoint subscribed to the event: rolled back, nothing is
sent; committed, nothing is lost. The worker sends them (webhook_sends.py).

Every event's body is `{"type", "timestamp", "data"}` (Standard Webhooks'
recommended shape); `data.user` names the user it is about, and a notification
appears as `notification_ref`'s fields. What each type's data carries is written
once, in docs/api.md ("Webhooks"); who emits each, in docs/webhooks.md.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .. import conf, outbound, users
from ..errors import NotFound, ServiceError
from ..models import Channel, Notification, WebhookEndpoint, WebhookEvent, WebhookMessage
from ..users import UserId

MAX_ENDPOINTS = 50  # each one is a row per event, written in the transaction that emits it
MAX_REFS = 1000
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24  # 192 bits, as Svix's; base64 of 24 bytes needs no padding
REF_FIELDS = ("id", "seq", "kind", "topic__slug", "idempotency_key")
SENT_AWAY: dict[str, str] = {Channel.EMAIL: WebhookEvent.EMAILED, Channel.WEBPUSH: WebhookEvent.PUSHED}  # services/away.py emits them


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_message_id() -> str:
    """Sortable by creation (milliseconds first), unique by 80 random bits."""
    return f"msg_{int(timezone.now().timestamp() * 1000):012x}{secrets.token_hex(10)}"


# --- endpoints ------------------------------------------------------------------------


def url_refusal(url: str) -> str:
    """Why the worker must not POST to `url` (outbound.py's rule, the host resolved now), or ""."""
    try:
        outbound.check(url, allow_private=conf.webhooks().allow_private)
    except outbound.Refused as exc:
        return str(exc)
    return ""


def create_endpoint(*, url: str, events: Iterable[str], created_by: AbstractBaseUser | None) -> WebhookEndpoint:
    """A new endpoint with a new secret (the one time the caller sees it is this answer)."""
    wanted = sorted({str(e) for e in events})
    unknown = [e for e in wanted if e not in WebhookEvent.values]
    if not wanted or unknown:
        raise ServiceError("invalid", f"events must be among {WebhookEvent.values}", fields={"events": "unknown or none"}, status=422)
    refusal = url_refusal(url)
    if refusal:
        raise ServiceError("invalid", "the webhook URL must be https to a public host", fields={"url": refusal}, status=422)
    # A cap, not an invariant: two creates at once may both pass it.
    if active_endpoints().count() >= MAX_ENDPOINTS:
        raise ServiceError("too_many_endpoints", f"at most {MAX_ENDPOINTS} webhook endpoints; delete one first", status=409)
    return WebhookEndpoint.objects.create(url=url, events=wanted, secret=new_secret(), created_by_id=created_by.pk if created_by else None)


def active_endpoints() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(removed_at__isnull=True).order_by("id")


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    found = active_endpoints().filter(pk=endpoint_id).first()
    if found is None:
        raise NotFound("not_found", "no such webhook endpoint")
    return found


def remove_endpoint(endpoint_id: int) -> None:
    """Gone from the API at once; what waits for it is not sent (the worker cancels it); its log stays."""
    with transaction.atomic():
        if not active_endpoints().filter(pk=endpoint_id).update(removed_at=timezone.now()):
            raise NotFound("not_found", "no such webhook endpoint")
        _cancel_pending(endpoint_id)


def set_disabled(endpoint_ids: Iterable[int], *, disabled: bool) -> int:
    with transaction.atomic():
        ids = list(active_endpoints().filter(pk__in=list(endpoint_ids)).values_list("pk", flat=True))
        WebhookEndpoint.objects.filter(pk__in=ids).update(disabled=disabled)
        if disabled:
            for endpoint_id in ids:
                _cancel_pending(endpoint_id)
    return len(ids)


def _cancel_pending(endpoint_id: int) -> None:
    # SKIP LOCKED: one being sent right now finishes as its answer says.
    pending = WebhookMessage.objects.select_for_update(skip_locked=True).filter(endpoint_id=endpoint_id, state=WebhookMessage.State.PENDING)
    WebhookMessage.objects.filter(pk__in=list(pending.values_list("pk", flat=True))).update(
        state=WebhookMessage.State.CANCELLED, finished_at=timezone.now()
    )


def retry_now(message_ids: Iterable[str]) -> int:
    """The operator's second chance for given-up messages: their retries start again (same webhook-id)."""
    return WebhookMessage.objects.filter(
        pk__in=list(message_ids), state=WebhookMessage.State.FAILED, endpoint__removed_at__isnull=True, endpoint__disabled=False
    ).update(state=WebhookMessage.State.PENDING, attempts=0, next_attempt_at=timezone.now(), finished_at=None)


# --- events ---------------------------------------------------------------------------


def subscribers(event_type: str) -> list[int]:
    """The endpoints that take `event_type` now (a few rows: filtered here, as SQLite has no JSON contains)."""
    rows = WebhookEndpoint.objects.filter(removed_at__isnull=True, disabled=False).values_list("pk", "events")
    return [pk for pk, events in rows if event_type in events]


def emit(event_type: str, data: Mapping[str, Any], *, user_id: UserId) -> int:
    """Put one event about a user in the outbox of every endpoint subscribed to it; call it inside the
    transaction of the change it reports. Returns how many messages it wrote."""
    return emit_many(event_type, [(user_id, data)])


def emit_many(event_type: str, events: list[tuple[UserId, Mapping[str, Any]]], *, endpoints: list[int] | None = None) -> int:
    """emit() for several users' events of one type at once (one statement). `endpoints`: subscribers()
    when the caller already asked (to skip building data nobody takes)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("webhooks.emit must run inside the transaction of the change it reports")
    if event_type not in WebhookEvent.values:
        raise ValueError(f"unknown webhook event {event_type!r}")
    endpoints = subscribers(event_type) if endpoints is None else endpoints
    if not endpoints or not events:
        return 0
    now = timezone.now()
    names = _usernames([user_id for user_id, _ in events])
    rows = []
    for user_id, data in events:
        user = {"id": users.wire(user_id), "username": names.get(user_id, "")}
        body = _body(event_type, now, {"user": user, **data})
        rows += [
            WebhookMessage(id=new_message_id(), endpoint_id=e, event_type=event_type, body=body, next_attempt_at=now, created_at=now)
            for e in endpoints
        ]
    WebhookMessage.objects.bulk_create(rows)
    return len(rows)


def _body(event_type: str, now: datetime, data: Mapping[str, Any]) -> str:
    stamp = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"type": event_type, "timestamp": stamp, "data": data}).decode()


def _usernames(user_ids: list[UserId]) -> dict[UserId, str]:
    model = get_user_model()
    return dict(model._default_manager.filter(pk__in=set(user_ids)).values_list("pk", model.USERNAME_FIELD))


def notification_ref(n: Notification) -> dict[str, Any]:
    """How an event names a notification: enough for its publisher to find its own record of it
    (`idempotency_key` is the publisher's own key, when it gave one)."""
    return {"id": n.id, "seq": n.seq, "kind": n.kind, "topic": n.topic.slug if n.topic else None, "idempotency_key": n.idempotency_key}


def refs(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """notification_ref's fields from `.values(*REF_FIELDS)` rows."""
    return [
        {"id": r["id"], "seq": r["seq"], "kind": r["kind"], "topic": r["topic__slug"], "idempotency_key": r["idempotency_key"]}
        for r in rows
    ]


def emit_delivered(moves: Mapping[UserId, tuple[int, int]]) -> int:
    """notification.delivered for each user whose delivered cursor moved, {user_id: (from, to)}; inside the ack's transaction."""
    endpoints = subscribers(WebhookEvent.DELIVERED) if moves else []
    if not endpoints:
        return 0
    events: list[tuple[UserId, Mapping[str, Any]]] = []
    for user_id, (old, new) in moves.items():
        rows = list(
            Notification.objects.filter(recipient_id=user_id, seq__gt=old, seq__lte=new).order_by("seq").values(*REF_FIELDS)[: MAX_REFS + 1]
        )
        events.append((user_id, {"delivered_seq": new, "notifications": refs(rows[:MAX_REFS]), "more": len(rows) > MAX_REFS}))
    return emit_many(WebhookEvent.DELIVERED, events, endpoints=endpoints)


# --- retention ------------------------------------------------------------------------


def prune(*, now: datetime | None = None) -> int:
    """Finished messages (and their attempts) older than retention, and removed endpoints with none left."""
    cutoff = (now or timezone.now()) - timedelta(days=conf.get().retention_days)
    deleted, _ = WebhookMessage.objects.exclude(state=WebhookMessage.State.PENDING).filter(created_at__lt=cutoff).delete()
    WebhookEndpoint.objects.filter(removed_at__lt=cutoff).exclude(pk__in=WebhookMessage.objects.values("endpoint_id")).delete()
    return int(deleted)
