"""Django's PostgreSQL backend, behind the availability breaker (notifications/availability.py).

Every connection the process takes and every database error passes through
here, so this is the one place that notices an outage and refuses new
connections during it: HTTP views, socket handshakes, the hub's heartbeat and
ack writes, commands alike.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from django.db.backends.postgresql import base
from django.db.utils import DatabaseErrorWrapper
from django.utils.functional import cached_property

from .. import availability


class _RecordingErrorWrapper(DatabaseErrorWrapper):
    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None, traceback: TracebackType | None) -> None:
        if exc_value is not None:
            availability.record(exc_value)
        super().__exit__(exc_type, exc_value, traceback)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        availability.check(self.alias)
        return super().get_new_connection(conn_params)

    @cached_property
    def wrap_database_errors(self) -> DatabaseErrorWrapper:
        return _RecordingErrorWrapper(self)
