"""Is the database up? A breaker: after a connection failure, fail fast for a moment, then probe once.

While PostgreSQL is down, every request used to wait out the pool's timeout
(10 s) and answer 500. Now the first failure opens the breaker: for
WINDOW_SECONDS every new connection is refused at once (DatabaseUnavailable,
answered 503 / close 4503), then one caller probes with a connection of its
own, outside the pool, bounded by libpq's connect_timeout. docs/decisions/0007.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from asgiref.sync import sync_to_async
from django.db import OperationalError, connections
from psycopg_pool import PoolTimeout

log = logging.getLogger(__name__)

WINDOW_SECONDS = 1.0
RETRY_AFTER_SECONDS = 1  # what 503 answers tell clients (whole seconds, as Retry-After takes)
# No SQLSTATE: the connection itself failed. 08: connection exception. 57P01-03: admin or crash
# shutdown, cannot connect now. Not a deadlock or a statement timeout: the database is up.
_DOWN_STATES = ("08", "57P01", "57P02", "57P03")


class DatabaseUnavailable(OperationalError):
    """The database is known to be down: nothing was tried."""


_lock = threading.Lock()
_failed_at: float | None = None  # None: closed, all is well
_probing = False


def is_down_error(exc: BaseException | None) -> bool:
    """A failure that says the database cannot be reached, not one about a query."""
    while exc is not None:
        if isinstance(exc, (DatabaseUnavailable, PoolTimeout)):
            return True
        if isinstance(exc, psycopg.OperationalError):
            return exc.sqlstate is None or exc.sqlstate.startswith(_DOWN_STATES)
        exc = exc.__cause__
    return False


def record(exc: BaseException) -> None:
    """Open the breaker if this error says the database is down."""
    global _failed_at
    if is_down_error(exc) and not isinstance(exc, DatabaseUnavailable):
        with _lock:
            if _failed_at is None:
                log.warning("database unavailable (%s); failing fast, probing every %.0fs", type(exc).__name__, WINDOW_SECONDS)
            _failed_at = time.monotonic()


def is_open() -> bool:
    """Cheap, for the event loop: whether a failure was seen and no probe has succeeded since."""
    return _failed_at is not None


def check(alias: str = "default") -> None:
    """Raise DatabaseUnavailable while the database is known to be down; one caller per window probes it."""
    global _failed_at, _probing
    with _lock:
        if _failed_at is None:
            return
        if _probing or time.monotonic() - _failed_at < WINDOW_SECONDS:
            raise DatabaseUnavailable("the database is unavailable; retry shortly")
        _probing = True
    try:
        _probe(alias)
    except Exception as exc:
        with _lock:
            _failed_at = time.monotonic()
        raise DatabaseUnavailable("the database is unavailable; retry shortly") from exc
    else:
        with _lock:
            _failed_at = None
        log.warning("database available again")
    finally:
        _probing = False


def _probe(alias: str) -> None:
    connection = connections[alias]
    # Outside the pool: its getconn would wait out the pool timeout. connect_timeout bounds this.
    with psycopg.connect(**connection.get_connection_params()) as probe:
        probe.execute("SELECT 1")
    pool = getattr(connection, "pool", None)
    if pool is not None:
        # Its idle connections died with the server: drop them now, or each would fail one request.
        pool.check()


async def ready() -> bool:
    """For async callers: False while the database is known to be down (a due probe runs off the loop)."""
    if not is_open():
        return True
    try:
        await sync_to_async(check, thread_sensitive=False)()
    except DatabaseUnavailable:
        return False
    return True


def reset() -> None:
    """Forget any failure (tests)."""
    global _failed_at
    with _lock:
        _failed_at = None
