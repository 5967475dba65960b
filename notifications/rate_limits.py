"""HTTP abuse limits: requests counted per token, user, client address or username (docs/decisions/0013).

django-ratelimit counts them in the default cache: Redis when REDIS_URL is set, so every
process shares one count, and the process's own memory on the embedded default. Each count
is an atomic increment in a fixed window; over the limit, the caller is told how many
seconds remain in it (Retry-After).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from django.http import HttpRequest
from django_ratelimit.core import get_usage
from redis.exceptions import RedisError

from . import conf

log = logging.getLogger(__name__)
_cache_failing = False  # an outage is logged when it starts and when it ends, not once per request


def message(retry_after: int) -> str:
    return f"too many requests: try again in {retry_after} s"


def hit(request: HttpRequest, *, group: str, key: str, rate: str | None) -> int | None:
    """Count this request against `group`'s limit for `key`: the seconds to wait if it is over, else None."""
    if rate is None:
        return None
    global _cache_failing
    try:
        usage: dict[str, Any] | None = get_usage(request, group=group, key=lambda _group, _request: key, rate=rate, increment=True)
    except RedisError as e:
        # A limit guards the service; it must not take the service down with Redis (publishes are
        # stored through a Redis outage: docs/guarantees.md). RATELIMIT_FAIL_OPEN covers the rest.
        if not _cache_failing:
            log.warning("rate limits are not counted while the cache fails (%s): requests go through", type(e).__name__)
        _cache_failing = True
        return None
    if _cache_failing:
        log.warning("rate limits are counted again")
        _cache_failing = False
    if usage is None or not usage["should_limit"]:
        return None
    # The window can end this very second: never tell a client to retry in 0 s.
    return max(1, int(usage["time_left"]))


def client_address(request: HttpRequest) -> str:
    """The caller's address: REMOTE_ADDR, or X-Forwarded-For as set by NOTIFY_TRUSTED_PROXIES proxies in front.

    Each trusted proxy appends the address it saw, so the client is the one that many entries from the right;
    entries further left were written by the client and prove nothing. An IPv6 client is counted by its /64,
    what one host is usually given.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    candidate = remote
    trusted = conf.get().trusted_proxies
    if trusted > 0:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if hops:
            candidate = hops[-min(trusted, len(hops))]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        # Not an address (a proxy that writes something else): never a key the client could vary at will.
        return remote or "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return str(address)


def login_attempt(request: HttpRequest, username: str) -> int | None:
    """Count one login attempt from this address and for this username: the seconds to wait if either is over its limit.

    Every attempt counts, before the password is checked, so parallel guesses cannot slip past a check;
    while locked, the right password is refused too. A username is counted case-folded, as typed.
    """
    limits = conf.get().rate_limits
    waits = [
        hit(request, group="login_address", key=client_address(request), rate=limits.login_address),
        hit(request, group="login_username", key=username.strip().casefold(), rate=limits.login_username),
    ]
    return max((w for w in waits if w is not None), default=None)
