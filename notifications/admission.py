"""How many sockets one process brings up at once: past the limit, a handshake is told to come back later.

After a restart every client returns at once. Queued handshakes that take
longer than the client (or daphne) waits are dropped after the server has done
their work, are retried, and are dropped again: nobody gets back. Refusing the
excess at once (close 4503 before any database work) keeps the work in hand
to what the process can finish, and the refused clients back off with jitter.
Under our daphne server (server.py) a full admission also closes new connections
as they are accepted, before their handshake costs anything (docs/decisions/0011).
"""

from __future__ import annotations

from collections.abc import Callable

from . import conf


class Admission:
    def __init__(self) -> None:
        self.connecting = 0

    @property
    def full(self) -> bool:
        return self.connecting >= conf.get().max_connecting

    def try_enter(self) -> Callable[[], None] | None:
        """A release to call once the socket is up (or gone), or None when too many are coming up."""
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
