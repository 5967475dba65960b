"""Per-caller rate limits on the API as ninja throttles: checked after authentication, before the body is read.

ninja answers a throttled request with Throttled (429, Retry-After from `wait()`); the API's
handler gives it the JSON error body. Its own throttles keep a list of timestamps, read and
written back, which two processes can overwrite; these count through rate_limits (an atomic
increment in the shared cache) instead (docs/decisions/0013).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Literal

from django.http import HttpRequest
from ninja.throttling import BaseThrottle

from .. import conf, rate_limits
from .security import caller

Group = Literal["publish", "tickets", "me"]

# ninja asks allow_request(), then wait() of the same shared object: the answer is kept per request context.
_retry_after: ContextVar[int | None] = ContextVar("retry_after", default=None)


class PerCaller(BaseThrottle):
    """`group`'s limit (conf.RateLimits) counted per token, or per user when `per_token` is off or it is a session."""

    def __init__(self, group: Group, *, per_token: bool = False) -> None:
        self.group = group
        self.per_token = per_token

    def allow_request(self, request: HttpRequest) -> bool:
        who = caller(request)
        key = f"token:{who.token.pk}" if self.per_token and who.token else f"user:{who.user_id}"
        rate: str | None = getattr(conf.get().rate_limits, self.group)
        retry_after = rate_limits.hit(request, group=self.group, key=key, rate=rate)
        _retry_after.set(retry_after)
        return retry_after is None

    def wait(self) -> float | None:
        return _retry_after.get()


PUBLISH = PerCaller("publish", per_token=True)
TICKETS = PerCaller("tickets")
ME = PerCaller("me")
