"""Acks: each user's delivered cursor (docs/decisions/0004-delivery-cursor.md)."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction
from django.utils import timezone

from .. import storage
from ..models import UserStream
from ..users import UserId
from . import webhooks


def ack(*, user_id: UserId, seq: int) -> int:
    """Cumulative ack: the device holds everything up to seq. Returns how many seqs it delivered first."""
    return ack_many({user_id: seq})


def ack_many(acks: Mapping[UserId, int]) -> int:
    """Cumulative acks of many users, {user_id: seq} (each server process's hub batches them).

    Each user's delivered cursor moves up to the ack, never down and never past
    the head: one row per user, however many notifications the ack covers.
    Streams are locked in user id order, as publishers lock them, so the two
    never deadlock. A cursor that moves is a notification.delivered webhook
    event, written in the same transaction. Returns how many seqs were
    delivered for the first time.
    """
    if not acks:
        return 0
    backend = storage.current()
    with transaction.atomic():
        locked = backend.user_in(UserStream.objects.select_for_update(), sorted(acks)).order_by("user_id")
        firsts = 0
        moved: dict[UserId, int] = {}
        previous: dict[UserId, int] = {}
        for user_id, head, delivered in locked.values_list("user_id", "head_seq", "delivered_seq"):
            seq = min(acks[user_id], head)
            if seq > delivered:
                firsts += seq - delivered
                moved[user_id] = seq
                previous[user_id] = delivered
        backend.move_delivered(moved, timezone.now())
        webhooks.emit_delivered({user_id: (previous[user_id], seq) for user_id, seq in moved.items()})
    return firsts
