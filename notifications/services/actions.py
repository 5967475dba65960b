"""Answers to a notification's actions: the first answer per notification stands, on every device.

An answer is an inbox change like the others (inbox.py): under the user's stream lock, one
transaction, once per client event id, and an event in the user's stream (`state`, op `action`,
`notification` and `action`) that also marks the notification read. The publisher hears of it
once: `notification.action` written to the webhook outbox in the same transaction, and
`signals.action_answered` sent after commit (in-process; nothing is sent for a rollback).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import signals
from ..changes import ACTION
from ..delivery.action_links import read_action_token
from ..errors import NotFound, ServiceError
from ..models import ActionAnswer, Notification, UserStream, WebhookEvent
from . import client_events, inbox, webhooks
from .streams import locked_stream

log = logging.getLogger(__name__)

ALREADY_ANSWERED = "already_answered"


@dataclass(frozen=True)
class Answered:
    """What an answer did: `ok` False when another answer stands (`answer` names it)."""

    ok: bool
    answer: str  # the standing action's id
    notification: int
    seq: int | None  # the answer's state event; None when it changed nothing (refused, or the same answer again)
    unread: int
    unseen: int
    head_seq: int
    repeated: bool = False

    def reply(self) -> dict[str, Any]:
        """The `reply` frame's fields (and the HTTP answer's), besides ref and id."""
        fields: dict[str, Any] = {"ok": self.ok, "op": ACTION, "notification": self.notification, "answer": self.answer}
        if not self.ok:
            fields.update(error=ALREADY_ANSWERED, message=f"this notification was answered already: {self.answer!r} stands")
        fields.update(seq=self.seq, unread=self.unread, unseen=self.unseen, head_seq=self.head_seq)
        if self.repeated:
            fields["repeated"] = True
        return fields


def answer(*, user_id: int, seq: int, action_id: str, client_id: str | None = None) -> Answered:
    """Answer the user's notification at `seq` with one of its actions (one without a url).

    Raises NotFound for a notification the user does not have, ServiceError `invalid_field` for
    an action it does not have or one that is a link; both leave nothing behind.
    """
    with transaction.atomic():
        stream = locked_stream(user_id)
        stored = client_events.first_reply(user_id, client_id) if client_id is not None else None
        if stored is not None:
            # Applied (or refused) before: change nothing; the counts are today's.
            return Answered(**stored, unread=stream.unread, unseen=stream.unseen, head_seq=stream.head_seq, repeated=True)
        result = _answer(stream, seq, action_id)
        if client_id is not None:
            client_events.record(
                user_id, client_id, op=ACTION, reply={k: getattr(result, k) for k in ("ok", "answer", "notification", "seq")}
            )
    return result


def _answer(stream: UserStream, seq: int, action_id: str) -> Answered:
    n = Notification.objects.select_related("topic").filter(recipient_id=stream.user_id, seq=seq).first()
    if n is None:
        raise NotFound("not_found", "no such notification")  # the same whoever's seq it is
    action = next((a for a in n.actions if a.get("id") == action_id), None)
    if action is None:
        raise ServiceError("invalid_field", f"the notification has no action {action_id[:64]!r}", fields={"action": "unknown"}, status=422)
    if action.get("url"):
        message = f"{action_id!r} is a link (it has a url): open it, there is nothing to answer"
        raise ServiceError("invalid_field", message, fields={"action": "a link"}, status=422)
    standing = ActionAnswer.objects.filter(notification=n).values_list("action", flat=True).first()
    if standing is not None:
        # The first answer stands: the same one again is fine and changes nothing; another is refused.
        return Answered(standing == action_id, standing, n.id, None, stream.unread, stream.unseen, stream.head_seq)
    now = timezone.now()
    ActionAnswer.objects.create(notification=n, action=action_id, answered_at=now)
    counts = inbox.Counts(stream.head_seq, stream.unread, stream.unseen, stream.seen_seq)
    (row,) = inbox.rows_of(Notification.objects.filter(pk=n.pk))
    if not row.read:
        Notification.objects.filter(pk=n.pk).update(read_at=now)
        counts.move(row, replace(row, read=True))
        inbox.emit_read(stream.user_id, ids=[n.id], up_to_seq=None)
    event_seq = inbox.record_event(stream, counts, ACTION, {"notification": n.id, "action": action_id})
    webhooks.emit(WebhookEvent.ACTION, {"notification": webhooks.notification_ref(n), "action": action_id}, user_id=stream.user_id)
    user_id, notification_id = stream.user_id, n.id
    transaction.on_commit(lambda: _send_signal(user_id, notification_id, seq, action_id, now))
    return Answered(True, action_id, n.id, event_seq, counts.unread, counts.unseen, counts.head_seq)


def _send_signal(user_id: int, notification_id: int, seq: int, action: str, answered_at: datetime) -> None:
    # Robust: the answer is committed; a receiver's failure is logged, never turned into a failed answer.
    for receiver, result in signals.action_answered.send_robust(
        sender=ActionAnswer, user_id=user_id, notification_id=notification_id, seq=seq, action=action, answered_at=answered_at
    ):
        if isinstance(result, Exception):
            log.error("action_answered receiver %r failed", receiver, exc_info=result)


# --- one-click answers from an email or a Web Push (delivery/action_links.py) -----------------


@dataclass(frozen=True)
class Link:
    """What a valid one-click token names, for its confirmation page."""

    title: str  # the notification's
    action: str
    label: str  # the action's
    standing: str | None  # the label of the answer that stands, if one does


def link(*, token: str) -> Link | None:
    """The token's notification and action as they stand; None for a bad token. NotFound when the
    notification is gone (deleted, pruned), ServiceError when its action is not one to answer."""
    found = read_action_token(token)
    if found is None:
        return None
    n = Notification.objects.filter(recipient_id=found.user_id, seq=found.seq).first()
    if n is None:
        raise NotFound("not_found", "no such notification")
    labels = {a.get("id"): a.get("label", "") for a in n.actions if not a.get("url")}
    if found.action not in labels:
        raise ServiceError("invalid_field", "the notification has no such action", fields={"action": "unknown"}, status=422)
    standing = ActionAnswer.objects.filter(notification=n).values_list("action", flat=True).first()
    return Link(n.title, found.action, labels[found.action], None if standing is None else labels.get(standing, standing))


def answer_by_token(*, token: str) -> tuple[Answered, Link] | None:
    """Answer as the token says (as its user would from any device); None for a bad token."""
    found = read_action_token(token)
    if found is None:
        return None
    answered = answer(user_id=found.user_id, seq=found.seq, action_id=found.action)
    shown = link(token=token)
    assert shown is not None
    return answered, shown
