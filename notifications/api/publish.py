"""POST /notifications and /notifications/batch: a service's way in (token with the publish scope).

Idempotency: the Idempotency-Key header is namespaced by the publishing user
(two services cannot collide on a key) and, in a batch, by the item's index.
The same key again answers 200 with the first result and writes nothing, for
as long as the first notification is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import Header, Router

from .. import selectors, services
from ..errors import NotFound
from ..fields import CONTENT_NAMES
from ..models import Scope
from ..schemas import ERRORS, IDEMPOTENCY_KEY_PATTERN, BatchIn, BatchOut, PublishIn, PublishOut
from . import limits
from .security import PUBLISH, Caller, Forbidden, caller

router = Router(tags=["publish"], throttle=limits.PUBLISH)

IdempotencyKey = Annotated[
    str | None,
    Header(
        default=None,
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Retry-safe key: the same key again writes nothing and returns 200.",
    ),
]


@router.post("/notifications", response={201: PublishOut, 200: PublishOut, **ERRORS}, auth=PUBLISH)
def publish(request: HttpRequest, payload: PublishIn, idempotency_key: IdempotencyKey = None) -> HttpResponse:
    """Publish one notification to users (ids or usernames) or to a topic's subscribers."""
    who = caller(request)
    key = f"p{who.user_id}:s:{idempotency_key}" if idempotency_key else None
    [result] = services.publish_many(to_requests([payload], who, [key], batch=False))
    return _json(201 if result.created else 200, _out(result))


@router.post("/notifications/batch", response={201: BatchOut, 200: BatchOut, **ERRORS}, auth=PUBLISH)
def publish_batch(request: HttpRequest, payload: BatchIn, idempotency_key: IdempotencyKey = None) -> HttpResponse:
    """Publish up to 1,000 notifications in one transaction: all are stored, or none."""
    who = caller(request)
    keys = [f"p{who.user_id}:b{i}:{idempotency_key}" if idempotency_key else None for i in range(len(payload.notifications))]
    results = services.publish_many(to_requests(payload.notifications, who, keys, batch=True))
    created = any(r.created for r in results)
    return _json(201 if created else 200, {"created": created, "results": [_out(r) for r in results]})


def to_requests(items: Sequence[PublishIn], who: Caller, keys: Sequence[str | None], *, batch: bool) -> list[services.PublishRequest]:
    """Resolve usernames and topics for all items first: an unknown one fails the whole request, before any write."""
    usernames = sorted({u for item in items for u in item.users if isinstance(u, str)})
    ids = sorted({u for item in items for u in item.users if not isinstance(u, str)})
    user_ids: dict[str | int, int] = {name: uid for name, uid in selectors.active_user_ids(usernames).items()} if usernames else {}
    user_ids.update({uid: uid for uid in selectors.active_ids(ids)} if ids else {})
    topics = selectors.topics_by_slug(sorted({item.topic for item in items if item.topic}))
    requests = []
    by_topic: dict[str, services.PublishRequest] = {}  # a topic's subscribers are read once per request
    actor_id = who.user_id
    for index, item in enumerate(items):
        where = f"notifications.{index}." if batch else ""
        missing = [str(u) for u in item.users if u not in user_ids]
        if missing:
            raise NotFound("unknown_recipient", f"no such user: {', '.join(missing[:10])}", fields={f"{where}users": "unknown user"})
        if item.topic and item.topic not in topics:
            raise NotFound("unknown_topic", f"no topic {item.topic!r}", fields={f"{where}topic": "unknown topic"})
        if item.level == "error" and item.data.get("critical") is True and not (who.token and Scope.CRITICAL in who.token.scopes):
            raise Forbidden("insufficient_scope", "marking a notification critical needs a token with the 'critical' scope")
        # PublishIn validated every content field already (it is a fields.ContentFields).
        content = services.Content.trusted(**{name: getattr(item, name) for name in CONTENT_NAMES}, actor_id=actor_id)
        if item.topic:
            if item.topic not in by_topic:
                by_topic[item.topic] = services.topic_request(topic=topics[item.topic], content=content)
            first = by_topic[item.topic]
            topic_content = content.model_copy(update={"topic_id": first.content.topic_id})
            requests.append(replace(first, content=topic_content, idempotency_key=keys[index]))
        else:
            requests.append(services.PublishRequest([user_ids[u] for u in item.users], content, keys[index]))
    return requests


def _out(result: services.PublishResult) -> dict[str, Any]:
    """PublishOut's shape, built as plain data: a 1,000-item batch as pydantic objects, validated again by
    ninja on the way out, cost more than storing it (docs/benchmarks.md); tests check the shape against the schema."""
    deliveries = [{"recipient": d.recipient_id, "id": d.id, "seq": d.seq} for d in result.deliveries]
    return {"created": result.created, "notifications": deliveries}


def _json(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
