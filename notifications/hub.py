"""Each server process's hub: receives pushes from the channel layer and fans them out to its sockets.

One hub per event loop (per server process; one per test loop). It keeps one
channel in push.NODES_GROUP for its life, fans pushes out to its listeners
(sockets and event streams), and beats for all of them: one query for every
local user's head, one check of every credential. Their acks and tokens' last
use go through its BatchedWrites (batched_writes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import weakref
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from . import auth, conf, lifecycle, presence, push, selectors, users
from .admission import admission
from .batched_writes import BatchedWrites

log = logging.getLogger(__name__)

GROUP_REFRESH_SECONDS = 60  # re-join the group this often: settings' group_expiry (300 s) forgets dead nodes
READ_AHEAD = 100  # channel-layer messages the hub reads ahead while it is busy sending
YIELD_EVERY = 100  # socket sends between turns of the event loop, so reading and inbound frames go on
# Rounds of sends start at most this often: in a burst, pushes that arrive
# meanwhile share one `batch` frame per socket (docs/decisions/0006-coalescing.md).
COALESCE_SECONDS = 0.1
# How long the hub remembers whom it dispatched to: well past the time between
# a handshake's read of its head and its attach (a read older than this reads again).
DISPATCHED_MEMORY_SECONDS = 10.0
STOP_ATTEMPTS = 5  # cancellations sent to the hub's tasks before stop() gives up on them
STOP_ATTEMPT_SECONDS = 1.0


class Listener(Protocol):
    """What the hub needs of a connected socket (the consumer)."""

    user_id: users.UserId
    credential: tuple[str, str]

    async def push_notifications(self, items: list[tuple[int, str]], redelivery: bool) -> None: ...
    async def on_heartbeat(self, head_seq: int, unread: int, unseen: int) -> None: ...
    async def close_unauthenticated(self) -> None: ...


class Dispatched:
    """Whom the hub dispatched pushes and events to lately, and when (time.monotonic()).

    A token's socket reads its head with the token check, before it can attach
    (auth.py): a push dispatched in between reached no socket of it. Asking
    here after attaching tells whether one may have been, so the head is read again.
    That read happens inside admission (admission.py), so the hub records only
    while a socket is coming up: a broadcast at other times keeps no user sets.
    """

    def __init__(self) -> None:
        self._runs: deque[tuple[float, set[users.UserId]]] = deque()
        self._known_from = time.monotonic()

    def record(self, user_ids: set[users.UserId]) -> None:
        now = time.monotonic()
        self._runs.append((now, user_ids))
        while self._runs[0][0] < now - DISPATCHED_MEMORY_SECONDS:
            self._known_from = self._runs.popleft()[0]

    def since(self, at: float, user_id: users.UserId) -> bool:
        """Whether something for this user may have been dispatched at or after `at` (True when the hub no longer knows)."""
        if at <= self._known_from:
            return True
        for dispatched_at, user_ids in reversed(self._runs):
            if dispatched_at < at:
                return False
            if user_id in user_ids:
                return True
        return False


class Hub:
    def __init__(self) -> None:
        self.listeners: dict[users.UserId, set[Listener]] = defaultdict(set)
        self.pushes_sent = 0
        self.started_at = time.monotonic()
        self._ready = asyncio.Event()
        self.channel = ""
        self.joined_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.writes = BatchedWrites()  # the acks and token uses of every local socket
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(READ_AHEAD)
        self.dispatched = Dispatched()

    @property
    def connections(self) -> int:
        return sum(len(s) for s in self.listeners.values())

    async def attach(self, listener: Listener) -> None:
        if not self._tasks:
            lifecycle.on_stop(self.leave)  # a draining server lets it write its acks and leave its group
            self._tasks = [
                asyncio.create_task(self._receive_loop()),
                asyncio.create_task(self._dispatch_loop()),
                asyncio.create_task(self._heartbeat_loop()),
                asyncio.create_task(self._report_loop()),
            ]
        self.listeners[listener.user_id].add(listener)
        await self._ready.wait()

    async def stop(self) -> None:
        lifecycle.forget(self.leave)
        stuck = set(self._tasks)
        # Cancelled again while any is left: a library that swallows one
        # cancellation (see _raise_if_cancelled) must not outlive the hub.
        for _ in range(STOP_ATTEMPTS):
            if not stuck:
                break
            for task in stuck:
                task.cancel()
            _, stuck = await asyncio.wait(stuck, timeout=STOP_ATTEMPT_SECONDS)
        if stuck:
            log.warning("hub tasks did not stop: %s", [t.get_coro() for t in stuck])
        self._tasks = []
        self._ready.clear()
        self.channel = ""  # the next start may be on another layer instance
        await self.writes.written()

    async def leave(self) -> None:
        """The process is stopping: write the acks still pending, leave the group, stop."""
        await self.writes.written()
        if self.channel:
            with contextlib.suppress(Exception):  # the group forgets us after group_expiry anyway
                await asyncio.wait_for(get_channel_layer().group_discard(push.NODES_GROUP, self.channel), 2)
        await self.stop()

    def detach(self, listener: Listener) -> None:
        group = self.listeners.get(listener.user_id)
        if group is not None:
            group.discard(listener)
            if not group:
                del self.listeners[listener.user_id]

    async def _receive_loop(self) -> None:
        layer = get_channel_layer()
        backoff = 0.1
        while True:
            try:
                # One channel for the hub's life: a new one per retry would leave the
                # old one in the group, and every push would still be written to it.
                self.channel = self.channel or await layer.new_channel("node")
                await self._join()
                _raise_if_cancelled()
                self._ready.set()
                while True:
                    await self._inbox.put(await layer.receive(self.channel))
                    _raise_if_cancelled()
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                _raise_if_cancelled()
                # Redis away: keep sockets up, retry; heartbeats replay what was missed.
                log.exception("hub lost the channel layer; retrying in %.1fs", backoff)
                self._ready.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _join(self) -> None:
        await get_channel_layer().group_add(push.NODES_GROUP, self.channel)
        self.joined_at = time.monotonic()

    async def _dispatch_loop(self) -> None:
        # Reading and sending are separate tasks: whatever arrives while the hub
        # is busy sending is taken together next time, and merged per user.
        started = -COALESCE_SECONDS
        while True:
            messages = [await self._inbox.get()]
            # In a burst, rounds start at most every COALESCE_SECONDS: pushes that
            # arrive meanwhile go out merged, one `batch` frame per socket.
            await asyncio.sleep(max(0.0, started + COALESCE_SECONDS - time.monotonic()))
            started = time.monotonic()
            while not self._inbox.empty():
                messages.append(self._inbox.get_nowait())
            try:
                await self.dispatch(messages)
            except Exception:
                _raise_if_cancelled()
                log.exception("dispatching %d pushes failed", len(messages))
            _raise_if_cancelled()

    async def dispatch(self, messages: list[dict[str, Any]]) -> None:
        """Deliver messages in order; a run of deliveries reaches each socket as one call with all its items."""
        sends = 0
        for (kind, redelivery), run in itertools.groupby(messages, key=lambda m: (m.get("type"), bool(m.get("redelivery")))):
            if kind == push.DELIVER:
                by_user: dict[users.UserId, list[tuple[int, str]]] = defaultdict(list)
                messages_of_run = list(run)
                for message in messages_of_run:
                    for wire_id, seq, text in message["items"]:
                        user_id = users.from_wire(wire_id)
                        if user_id in self.listeners:
                            by_user[user_id].append((seq, text))
                # Recorded in the same step as the sockets are picked: one attached later is not among them.
                if admission.connecting:
                    self.dispatched.record({users.from_wire(user_id) for message in messages_of_run for user_id, _, _ in message["items"]})
                deliveries = [(listener, items) for user_id, items in by_user.items() for listener in self.listeners.get(user_id, ())]
                for listener, items in deliveries:
                    try:
                        await listener.push_notifications(items, redelivery)
                    except Exception:
                        # One socket's failure must not cost the others their push; it catches up on heartbeat.
                        _raise_if_cancelled()
                        log.exception("a push to a socket of user %s failed", listener.user_id)
                        continue
                    self.pushes_sent += len(items)
                    sends += 1
                    if sends % YIELD_EVERY == 0:
                        await asyncio.sleep(0)

    def report(self) -> presence.NodeReport:
        counts = {uid: len(group) for uid, group in self.listeners.items()}
        return presence.NodeReport(presence.NODE_ID, time.time(), sum(counts.values()), self.pushes_sent, counts)

    async def _report_loop(self) -> None:
        client = presence.async_client()
        try:
            while True:
                try:
                    await presence.publish(self.report(), client)
                except Exception:
                    _raise_if_cancelled()
                    log.warning("presence report failed", exc_info=True)
                _raise_if_cancelled()
                await asyncio.sleep(presence.REPORT_SECONDS)
        finally:
            if client is not None:
                # Bounded: a connection cut mid-command must not hold up shutdown.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(presence.withdraw(presence.NODE_ID, client), 2)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), 2)

    async def _heartbeat_loop(self) -> None:
        interval = conf.get().heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                if self.channel and time.monotonic() - self.joined_at > GROUP_REFRESH_SECONDS:
                    # Timer-driven: a node that hears nothing for a while must still not be forgotten.
                    await self._join()
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception:
                _raise_if_cancelled()
                log.exception("heartbeat failed")
            _raise_if_cancelled()

    async def beat(self) -> None:
        """One query for every local user's head seq, one check of every credential."""
        listeners = [listener for group in self.listeners.values() for listener in group]
        if not listeners:
            return
        credentials = {listener.credential for listener in listeners}
        heads, invalid = await database_sync_to_async(_heartbeat_state)(list(self.listeners), credentials)

        def beat_one(listener: Listener) -> Awaitable[None]:
            if listener.credential in invalid:
                return listener.close_unauthenticated()
            return listener.on_heartbeat(*heads.get(listener.user_id, (0, 0, 0)))

        await _each(listeners, beat_one, "a heartbeat")


async def _each(listeners: Iterable[Listener], send: Callable[[Listener], Awaitable[None]], what: str) -> None:
    """Send to every listener: one socket's failure (one already closing, say) must not cost the others theirs.

    Logged once per call: a drain closes thousands of sockets at once.
    """
    failed: list[Exception] = []
    for listener in listeners:
        try:
            await send(listener)
        except Exception as error:
            _raise_if_cancelled()
            failed.append(error)
    if failed:
        log.warning("%s failed on %d sockets; the first:", what, len(failed), exc_info=failed[0])


def _heartbeat_state(
    user_ids: list[users.UserId], credentials: Iterable[tuple[str, str]]
) -> tuple[dict[users.UserId, tuple[int, int, int]], set[tuple[str, str]]]:
    return selectors.heads(user_ids), auth.invalid_credentials(credentials)


def _raise_if_cancelled() -> None:
    """Called after every await of a hub loop: a cancellation that a library swallowed must still end it.

    Python 3.11's asyncio.wait_for returns the result, dropping the cancellation,
    when its inner call completes in the same turn; redis-py sends every command
    through it when a socket timeout is set (ours is), so the presence loop
    survived a cancel about half the time and kept the test loop from closing.
    Others turn the cancellation into another error. Either way the task still
    counts it in cancelling().
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """The hub of the running event loop (one per server process; one per test loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = Hub()
    return _hubs[loop]
