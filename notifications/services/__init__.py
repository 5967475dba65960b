"""Writes: every change to notifications, sequences, read state and subscriptions goes through here.

A module per subject; this package's namespace is what views, consumers, the API,
the admin and commands call (`services.notify(...)`).
"""

from .delivery import ack, ack_many
from .publish import (
    Content,
    Delivery,
    PublishRequest,
    PublishResult,
    notify,
    publish_many,
    publish_to_everyone,
    publish_to_topic,
    redeliver,
    topic_request,
)
from .read_state import ReadResult, mark_read, mark_read_ids, mark_unread, mark_unread_ids
from .retention import delete_notifications, prune
from .topics import subscribe, unsubscribe

__all__ = [
    "Content",
    "Delivery",
    "PublishRequest",
    "PublishResult",
    "ReadResult",
    "ack",
    "ack_many",
    "delete_notifications",
    "mark_read",
    "mark_read_ids",
    "mark_unread",
    "mark_unread_ids",
    "notify",
    "prune",
    "publish_many",
    "publish_to_everyone",
    "publish_to_topic",
    "redeliver",
    "subscribe",
    "topic_request",
    "unsubscribe",
]
