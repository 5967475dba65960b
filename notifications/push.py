"""The send side: what services call, after commit, to signal live sockets through the channel layer.

One message per publish (per CHUNK recipients), to the group every server
process's hub (hub.py) listens on; each hub fans it out in process to the
sockets it holds (docs/decisions/0001-node-fanout.md). A push is a signal, never
the record: if one is dropped (capacity, expiry, Redis away) nothing is lost,
since sockets replay from the database when a heartbeat shows they are behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import protocol, selectors, users
from .frames import StoredNotification, notification_frame

log = logging.getLogger(__name__)

NODES_GROUP = "notifications.nodes"
CHUNK = 500  # recipients per channel-layer message: keeps each well under Redis' comfort size

# The message types a hub receives (hub.Hub.dispatch).
# A user id travels as users.wire() makes it: msgpack and JSON carry no UUID.
# Notifications and inbox events (`state` frames) alike: each has its seq in its user's stream.
DELIVER = "node.deliver"  # {items: [[user_id, seq, frame text], ...], redelivery: bool}


class Recipient(StoredNotification, Protocol):
    recipient_id: int  # as django-stubs types a key; a UUID key is carried the same way
    topic_id: int | None


def notifications_created(rows: Sequence[Recipient], *, redelivery: bool = False) -> None:
    if not rows:
        return
    slugs = selectors.topic_slugs({n.topic_id for n in rows if n.topic_id})
    items = [
        [users.wire(n.recipient_id), n.seq, protocol.encode(notification_frame(n, slugs.get(n.topic_id) if n.topic_id else None))]
        for n in rows
    ]
    for start in range(0, len(items), CHUNK):
        _send({"type": DELIVER, "items": items[start : start + CHUNK], "redelivery": redelivery})


def stream_events(user_id: users.UserId, events: Sequence[tuple[int, str]]) -> None:
    """Inbox events of one user, (seq, encoded `state` frame): they reach sockets exactly as notifications do."""
    _send({"type": DELIVER, "items": [[users.wire(user_id), seq, text] for seq, text in events], "redelivery": False})


class _Outage:
    """Whether the last push failed: an outage is logged once with its traceback, and once when it ends."""

    failing = False


def _send(message: dict[str, Any]) -> None:
    """Never raises: the rows are committed, and a lost push is recovered by heartbeat and resume."""
    try:
        async_to_sync(get_channel_layer().group_send)(NODES_GROUP, message)
    except Exception:
        if not _Outage.failing:
            log.exception("push through the channel layer failed; clients will catch up on heartbeat")
        else:
            log.debug("push through the channel layer failed again", exc_info=True)
        _Outage.failing = True
        return
    if _Outage.failing:
        _Outage.failing = False
        log.warning("pushes go through the channel layer again")
