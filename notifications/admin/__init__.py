"""The Django admin as the operator's console. Thin: every write goes through services and auth.

One module per concern: notifications (list, actions, compose), topics and
subscriptions, API tokens, the per-user delivery view, the away channels and the
users' choices for them, webhooks; listing.py holds what
keeps the big lists fast (cheap counts, a date drill-down without full scans).
"""

from . import away, notifications, preferences, streams, tokens, topics, webhooks

__all__ = ["away", "notifications", "preferences", "streams", "tokens", "topics", "webhooks"]
