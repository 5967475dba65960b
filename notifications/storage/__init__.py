"""The database seam: the few writes and reads whose fast form is PostgreSQL's own SQL.

Everything else is plain ORM. Each operation has a PostgreSQL implementation
(storage/postgres.py) and a portable one for the embedded SQLite default
(storage/portable.py); `backend()` picks by the connection's vendor, so no other
module asks which database it is on.
"""

from __future__ import annotations

from django.db import connections, transaction

from . import portable, postgres
from .base import Backend, MissingStreams, NewRow

__all__ = ["Backend", "MissingStreams", "NewRow", "backend", "current"]


def backend(using: str = "default") -> Backend:
    return postgres.BACKEND if connections[using].vendor == "postgresql" else portable.BACKEND


def current() -> Backend:
    """The backend of the connection the current transaction runs on."""
    return backend(transaction.get_connection().alias)
