"""How many sockets one process brings up at once: past the limit, a handshake is told to come back later.

After a restart every client returns at once. Queued handshakes that take
longer than the client (or daphne) waits are dropped after the server has done
their work, are retried, and are dropped again: nobody gets back. Refusing the
excess at once (close 4503 before any database work) keeps the work in hand
to what the process can finish, and the refused clients back off with jitter.
Under our daphne server (server.py) the excess never gets that far: the server
stops accepting while what it accepted would fill the limit, and the rest wait
in the kernel's accept queue (docs/decisions/0011, 0012).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from . import conf

# An accepted connection holds a place until its handshake reaches the app, or
# this long: one that never speaks (or is plain HTTP) cannot keep the gate shut.
ACCEPTED_HOLD_SECONDS = 1.0


class Admission:
    def __init__(self) -> None:
        self.connecting = 0
        self._accepted: deque[float] = deque()  # when each connection on its way to the app was accepted

    @property
    def full(self) -> bool:
        return self.connecting >= conf.get().max_connecting

    @property
    def room(self) -> int:
        """Connections that may be accepted now, counting those whose handshake has not reached the app yet."""
        horizon = time.monotonic() - ACCEPTED_HOLD_SECONDS
        while self._accepted and self._accepted[0] < horizon:
            self._accepted.popleft()
        return conf.get().max_connecting - self.connecting - len(self._accepted)

    @property
    def may_accept(self) -> bool:
        return self.room > 0

    def accepted(self) -> None:
        """The server accepted a connection: it holds a place until its handshake arrives (try_enter)."""
        self._accepted.append(time.monotonic())

    def try_enter(self) -> Callable[[], None] | None:
        """A release to call once the socket is up (or gone), or None when too many are coming up."""
        if self._accepted:
            self._accepted.popleft()  # one accepted connection has arrived (which one does not matter)
        if self.full:
            return None
        self.connecting += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.connecting -= 1

        return release


# One per process: every socket of a server process runs on its one event loop.
admission = Admission()
