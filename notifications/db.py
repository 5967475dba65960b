"""Database connections of async code: every database_sync_to_async call gives back what it opened.

asgiref 3.13 runs the wrapped function in a copy of the caller's context, and
Django keeps connections in context-local storage. channels' own
close_old_connections runs outside that copy, so it never sees the connection
the call opened: without a pool, every call left one open until garbage
collection (PostgreSQL ran out of slots under load); with the pool, every call
kept a slot for good. Closing inside the call's context fixes both, for our
calls and for channels' session and auth middleware alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync
from channels.db import DatabaseSyncToAsync
from django.db import close_old_connections

R = TypeVar("R")


def _closing(child: Callable[[], R]) -> R:
    close_old_connections()
    try:
        return child()
    finally:
        close_old_connections()


def _thread_handler(self: DatabaseSyncToAsync, loop: Any, exc_info: Any, task_context: Any, func: Any, child: Callable[[], Any]) -> Any:
    # `func` enters the call's context and then runs `child`: wrapped here, the close runs in there.
    return SyncToAsync.thread_handler(self, loop, exc_info, task_context, func, functools.partial(_closing, child))


def install() -> None:
    DatabaseSyncToAsync.thread_handler = _thread_handler
