"""Publishing: store one row per recipient, advance their sequences, push after commit.

A user's seqs are allocated under the row lock on their UserStream, in the
transaction that inserts the rows, so commit order is seq order. The push
leaves only from transaction.on_commit: a rolled-back write is never announced,
and a push is a signal, never the record.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import push, selectors, storage, users
from ..fields import Content
from ..models import Notification, Topic
from ..storage import NewRow
from .streams import create_streams


@dataclass(frozen=True)
class Delivery:
    recipient_id: int
    id: int
    seq: int


@dataclass(frozen=True)
class PublishResult:
    created: bool
    deliveries: list[Delivery]


@dataclass(frozen=True)
class PublishRequest:
    recipient_ids: Sequence[int]
    content: Content
    idempotency_key: str | None = None


def notify(*, recipient_ids: Iterable[int], content: Content, idempotency_key: str | None = None) -> PublishResult:
    """Store one notification per recipient and push it after commit."""
    return publish_many([PublishRequest(list(recipient_ids), content, idempotency_key)])[0]


def topic_request(*, topic: Topic, content: Content, idempotency_key: str | None = None) -> PublishRequest:
    """A publish to the topic's current unmuted subscribers (to pass to publish_many, alone or with others)."""
    return PublishRequest(selectors.topic_audience(topic.id), content.model_copy(update={"topic_id": topic.id}), idempotency_key)


def publish_to_topic(*, topic: Topic, content: Content, idempotency_key: str | None = None) -> PublishResult:
    """Fan out to the topic's subscribers, in bulk statements."""
    return publish_many([topic_request(topic=topic, content=content, idempotency_key=idempotency_key)])[0]


def publish_to_everyone(*, content: Content, idempotency_key: str | None = None) -> PublishResult:
    """Every active user gets it: the operator's broadcast."""
    user_ids = list(get_user_model()._default_manager.filter(**users.active_only()).order_by("pk").values_list("pk", flat=True))
    return publish_many([PublishRequest(user_ids, content, idempotency_key)])[0]


def publish_many(requests: Sequence[PublishRequest]) -> list[PublishResult]:
    """Publish several requests in one transaction: all are stored, or none."""
    retried_key = False
    while True:
        try:
            with transaction.atomic():
                return _publish_locked(requests)
        except storage.MissingStreams as missing:
            # A user's first notification: give them a stream (or fail, nothing written) and go again.
            create_streams(missing.user_ids)
        except IntegrityError:
            # A concurrent retry with the same key won the race on the unique
            # (key, recipient) index; our transaction is gone, its result stands.
            if retried_key or not any(r.idempotency_key for r in requests):
                raise
            retried_key = True


def redeliver(ids: Sequence[int]) -> int:
    """Push stored notifications again to their recipients' live sockets."""
    rows = list(Notification.objects.filter(id__in=ids).order_by("recipient_id", "seq"))
    push.notifications_created(rows, redelivery=True)
    return len(rows)


def _publish_locked(requests: Sequence[PublishRequest]) -> list[PublishResult]:
    # Before any lock: a concurrent publish with one of these keys that commits
    # meanwhile makes our insert fail on the unique index, and publish_many retries.
    earlier = _earlier_results([r.idempotency_key for r in requests if r.idempotency_key])
    fresh = [r for r in requests if not (r.idempotency_key and r.idempotency_key in earlier)]
    rows = _plan(fresh)
    if rows:
        storage.current().insert(rows)
        transaction.on_commit(lambda: push.notifications_created(rows))

    by_request: dict[int, list[Delivery]] = defaultdict(list)
    for index, row in zip(_request_indexes(fresh), rows, strict=True):
        by_request[index].append(Delivery(row.recipient_id, row.id, row.seq))
    results = []
    fresh_index = 0
    for r in requests:
        if r.idempotency_key and r.idempotency_key in earlier:
            results.append(PublishResult(False, earlier[r.idempotency_key]))
        else:
            results.append(PublishResult(True, by_request[fresh_index]))
            fresh_index += 1
    return results


def _plan(requests: Sequence[PublishRequest]) -> list[NewRow]:
    """The rows to insert, each `seq` still its place among this publish's rows for that user (1, 2, ...)."""
    now = timezone.now()
    places: Counter[int] = Counter()
    rows = []
    for r in requests:
        for uid in dict.fromkeys(r.recipient_ids):
            places[uid] += 1
            rows.append(NewRow(recipient_id=uid, seq=places[uid], content=r.content, created_at=now, idempotency_key=r.idempotency_key))
    return rows


def _request_indexes(requests: Sequence[PublishRequest]) -> Iterable[int]:
    for index, r in enumerate(requests):
        for _ in dict.fromkeys(r.recipient_ids):
            yield index


def _earlier_results(keys: list[str]) -> dict[str, list[Delivery]]:
    if not keys:
        return {}
    found: dict[str, list[Delivery]] = defaultdict(list)
    for key, recipient_id, id_, seq in (
        Notification.objects.filter(idempotency_key__in=keys).order_by("id").values_list("idempotency_key", "recipient_id", "id", "seq")
    ):
        found[str(key)].append(Delivery(recipient_id, id_, seq))
    return dict(found)
