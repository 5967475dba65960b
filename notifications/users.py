"""The host's users as this app carries them: whatever AUTH_USER_MODEL is, with an integer or a UUID key, any login field.

Inside a process a user id is the primary key's own Python value (an int, a
uuid.UUID), as the ORM returns it. Across a boundary that only carries JSON or
msgpack (the channel layer, presence reports) it travels as `wire(pk)`: an int
as is, anything else as its text; `from_wire` turns it back.
"""

from __future__ import annotations

import functools
from typing import Any, TypeAlias

from django.contrib.auth import get_user_model
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

# An int for Django's User, a uuid.UUID for a UUID key. Typed Any: django-stubs types every lookup by the
# AUTH_USER_MODEL of the settings mypy runs with (this service's, integer), not the host's.
UserId: TypeAlias = Any
WireId: TypeAlias = int | str


def _pk() -> Field[Any, Any]:
    pk = get_user_model()._meta.pk
    assert pk is not None
    return pk


def to_pk(value: Any) -> UserId:
    """A user id from any of its forms (a UUID's text or hex, a digit string): the key's Python value."""
    if isinstance(value, int):
        return value
    pk: UserId = _pk().to_python(value)
    return pk


def wire(pk: UserId) -> WireId:
    return pk if isinstance(pk, int) else str(pk)


def from_wire(value: WireId) -> UserId:
    return value if isinstance(value, int) else to_pk(value)


def db_value(pk: UserId, connection: BaseDatabaseWrapper) -> Any:
    """The key as a raw SQL parameter takes it: SQLite keeps a UUID as 32 hex digits, PostgreSQL as uuid."""
    return _pk().get_db_prep_value(pk, connection)


def db_type(connection: BaseDatabaseWrapper) -> str:
    """The key's column type, for a cast in raw SQL (bigint, integer, uuid...)."""
    return str(_pk().rel_db_type(connection))


@functools.cache
def has_active_flag() -> bool:
    """Whether the user model stores `is_active`. Without it (a bare AbstractBaseUser) every user is active, as for ModelBackend."""
    return any(f.name == "is_active" for f in get_user_model()._meta.concrete_fields)


def active_only(path: str = "") -> dict[str, bool]:
    """The ORM filter for active users, e.g. `filter(**active_only("user__"))`; empty for a model without the flag."""
    return {f"{path}is_active": True} if has_active_flag() else {}


def login_field() -> str:
    """The user model's login field (USERNAME_FIELD): what commands, the API and admin searches name a user by."""
    return str(get_user_model().USERNAME_FIELD)
