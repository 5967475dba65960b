"""Signals the service sends for the host application, in-process (docs/api.md, "Signals").

`action_answered`: a user's answer to a notification's action stood (the first per notification);
sent once, after its transaction commits (never for a rollback, a repeat or a refused answer), with
`user_id`, `notification_id`, `seq` (the notification's), `action` (the action's id) and `answered_at`.
"""

from __future__ import annotations

from django.dispatch import Signal

action_answered = Signal()
