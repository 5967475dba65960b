"""Real-time notifications for Django that never lose one: a reusable app (docs/integrate.md).

`from notifications import notify` is the host's way in. It is resolved on first
use: this package is imported while settings load, before any model may be.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "notify":
        from .public import notify

        return notify
    raise AttributeError(f"module 'notifications' has no attribute {name!r}")
