"""A small Python client for the notification service: publish over HTTP, listen over WebSocket.

No Django here: any Python service can copy this folder. HTTP uses the standard
library; the socket uses `websockets`.

    client = Client("http://127.0.0.1:8000", token="ntf_…")
    client.publish(users=["alice"], title="Build green", idempotency_key="build-42")

    async with client.listen(since=cursor) as stream:
        async for n in stream:          # in seq order, each seq once
            print(n.seq, n.title)
        # stream.consumed: the last seq you took; persist it, pass it as `since` next time

    async with client.listen(since=cursor) as stream:
        reply = await stream.archive([n.id])   # through the outbox: applied once, even across reconnects
        stream.inbox.view()                    # what it holds, every device's changes applied

The listener keeps a cursor (the last seq it holds), de-duplicates by seq,
resumes on `synced {more}` and when a heartbeat shows it is behind, acks
cumulatively in batches (for what the caller has taken), and reconnects with
exponential backoff and full jitter, from `since=cursor`. A `reset` (cursor
older than retention) is recovered over HTTP when the listener has a token.
Changes of inbox state (`state` events) share the seqs and the rule; they are
applied to `listener.inbox`, and the unread and unseen counts follow them.
"""

from .http import Client, notification_payload, ws_url_for
from .inbox import Change, Inbox, Item
from .listener import Listener
from .outbox import Outbox
from .values import (
    CLOSE_FORBIDDEN,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHENTICATED,
    FATAL_CLOSE_CODES,
    Action,
    ApiError,
    Delivery,
    InboxPage,
    ListenerClosed,
    Notification,
    PublishResult,
)

__all__ = [
    "CLOSE_FORBIDDEN",
    "CLOSE_RATE_LIMITED",
    "CLOSE_UNAUTHENTICATED",
    "FATAL_CLOSE_CODES",
    "Action",
    "ApiError",
    "Change",
    "Client",
    "Delivery",
    "Inbox",
    "InboxPage",
    "Item",
    "Listener",
    "ListenerClosed",
    "Notification",
    "Outbox",
    "PublishResult",
    "notification_payload",
    "ws_url_for",
]
