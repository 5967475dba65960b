"""What a stopping server process must let finish: coroutines registered by the app, run by the server.

A seam with no imports of the app: notifications/server.py runs before Django
is set up, and the hub (which holds acks to write and a group to leave)
registers itself here when it starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

_on_stop: list[Callable[[], Awaitable[None]]] = []


def on_stop(callback: Callable[[], Awaitable[None]]) -> None:
    if callback not in _on_stop:
        _on_stop.append(callback)


def forget(callback: Callable[[], Awaitable[None]]) -> None:
    if callback in _on_stop:
        _on_stop.remove(callback)


async def stop() -> None:
    """Run every registered callback; one failing does not keep the others from running."""
    callbacks, _on_stop[:] = list(_on_stop), []
    await asyncio.gather(*(callback() for callback in callbacks), return_exceptions=True)
