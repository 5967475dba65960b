"""Live figures of the service for the staff /ops page: cheap reads, one JSON-ready snapshot.

Connections and pushes come from the presence reports every server process
writes (presence.py); notifications from the database on an indexed column
(created_at), unacked ones from the per-user delivered cursors, the away-channel
worker's from the task engine's table (selectors.worker_status).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Min, Sum
from django.utils import timezone

from . import presence, selectors
from .models import Notification

RATE_WINDOW_SECONDS = 10


@dataclass(frozen=True)
class Snapshot:
    at: float
    nodes: int
    connections: int
    notifications_per_second: float
    pushes_per_second: float
    pushes_sent_total: int
    unacked: int
    oldest_unacked_age_s: float | None
    worker_due: int
    worker_running: int
    worker_last_finished_age_s: float | None
    worker_failed_last_hour: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PushRate:
    """Pushes per second across nodes, from successive presence reports of each node.

    A node reports a cumulative counter every few seconds; the rate of a node is
    the change between its last two distinct reports. A restarted node starts
    from zero again, which counts as no pushes rather than a negative rate.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}
        self._rates: dict[str, float] = {}

    def update(self, reports: list[presence.NodeReport]) -> float:
        with self._lock:
            for r in reports:
                previous = self._last.get(r.node)
                if previous is not None and r.at > previous[0]:
                    delta = r.pushes_sent - previous[1]
                    self._rates[r.node] = max(delta, 0) / (r.at - previous[0])
                if previous is None or r.at > previous[0]:
                    self._last[r.node] = (r.at, r.pushes_sent)
            alive = {r.node for r in reports}
            for node in set(self._last) - alive:
                self._last.pop(node, None)
                self._rates.pop(node, None)
            return sum(self._rates.values())


_push_rate = PushRate()


def notifications_per_second(now: datetime | None = None, window_s: int = RATE_WINDOW_SECONDS) -> float:
    """Rows created in the last window (one per recipient), per second."""
    since = (now or timezone.now()) - timedelta(seconds=window_s)
    return Notification.objects.filter(created_at__gte=since).count() / window_s


def unacked(now: datetime | None = None) -> tuple[int, float | None]:
    """Notifications no device has acknowledged yet, and the age in seconds of the oldest.

    One pass over the streams: each user's seqs above their delivered cursor.
    """
    behind = selectors.streams_behind()
    count = behind.aggregate(n=Sum(F("head_seq") - F("delivered_seq")))["n"] or 0
    oldest: datetime | None = behind.annotate(at=selectors.oldest_undelivered_at()).aggregate(oldest=Min("at"))["oldest"]
    age = ((now or timezone.now()) - oldest).total_seconds() if oldest else None
    return int(count), age


def snapshot() -> Snapshot:
    reports = presence.reports()
    now = timezone.now()
    count, age = unacked(now)
    worker = selectors.worker_status(now=now)
    finished = worker.last_finished_at
    return Snapshot(
        at=time.time(),
        nodes=len(reports),
        connections=sum(r.connections for r in reports),
        notifications_per_second=round(notifications_per_second(now), 2),
        pushes_per_second=round(_push_rate.update(reports), 2),
        pushes_sent_total=sum(r.pushes_sent for r in reports),
        unacked=count,
        oldest_unacked_age_s=round(age, 1) if age is not None else None,
        worker_due=worker.due,
        worker_running=worker.running,
        worker_last_finished_age_s=round((now - finished).total_seconds(), 1) if finished else None,
        worker_failed_last_hour=worker.failed_last_hour,
    )
