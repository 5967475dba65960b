"""Writes: every change to notifications, sequences, read state and subscriptions goes through here.

A module per subject; this package's namespace is what views, consumers, the API,
the admin and commands call (`services.notify(...)`).
"""

from . import webhooks  # a module: services.webhooks.emit(...)
from .actions import Answered
from .actions import Link as ActionLink
from .actions import answer as answer_action
from .actions import answer_by_token as answer_action_by_token
from .actions import link as action_link
from .away import Report, deliver_due
from .delivery import ack, ack_many
from .inbox import Outcome
from .inbox import apply as change_inbox
from .preferences import (
    Choice,
    Quiet,
    UnsubscribeLink,
    add_push_subscription,
    category_labels,
    choices,
    fallbacks,
    quiet_hours,
    remove_push_subscription,
    set_preferences,
    unsubscribe_link,
)
from .preferences import unsubscribe as unsubscribe_by_token
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
from .read_state import ReadResult, delete_notifications, mark_read, mark_read_ids, mark_unread, mark_unread_ids
from .retention import prune
from .snooze import wake, wake_overdue
from .topics import subscribe, unsubscribe
from .users import AppUser, UserFields, delete_user, get_user, put_user
from .webhook_sends import deliver_due as deliver_webhooks

__all__ = [
    "ActionLink",
    "Answered",
    "AppUser",
    "Choice",
    "Content",
    "Delivery",
    "Outcome",
    "PublishRequest",
    "PublishResult",
    "Quiet",
    "ReadResult",
    "Report",
    "UnsubscribeLink",
    "UserFields",
    "ack",
    "ack_many",
    "action_link",
    "add_push_subscription",
    "answer_action",
    "answer_action_by_token",
    "category_labels",
    "change_inbox",
    "choices",
    "delete_notifications",
    "delete_user",
    "deliver_due",
    "deliver_webhooks",
    "fallbacks",
    "get_user",
    "mark_read",
    "mark_read_ids",
    "mark_unread",
    "mark_unread_ids",
    "notify",
    "prune",
    "publish_many",
    "publish_to_everyone",
    "publish_to_topic",
    "put_user",
    "quiet_hours",
    "redeliver",
    "remove_push_subscription",
    "set_preferences",
    "subscribe",
    "topic_request",
    "unsubscribe",
    "unsubscribe_by_token",
    "unsubscribe_link",
    "wake",
    "wake_overdue",
    "webhooks",
]
