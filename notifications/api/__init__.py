"""HTTP API v1 (docs/api.md): validate with schemas.py, call services and selectors, serialize.

Every error is JSON: {"code", "message", "fields"}. Views stay thin; the
package holds the NinjaAPI instance and its error handlers, and one module per
group of endpoints.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

import orjson
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError
from ninja.parser import Parser

from .. import availability, conf, rate_limits
from ..errors import ServiceError
from ..fields import fits_64_bits
from ..middleware import unavailable_response
from . import away, inbox_state, me, publish, users, webhooks
from .security import READ

log = logging.getLogger(__name__)

# 2**63 has 19 digits: a body with an integer past 64 bits anywhere has a run at least as long.
_LONG_DIGITS = re.compile(rb"\d{19}")


def _int64(literal: str) -> int:
    value = int(literal)
    if not fits_64_bits(value):
        raise ValueError("an integer does not fit in 64 bits")
    return value


class StrictJsonParser(Parser):
    """No NaN or Infinity, no integers past 64 bits, no lone surrogates: what is stored must round-trip.

    orjson refuses the rest but reads an integer past 64 bits as a float, silently changed; a body with
    a run of 19 digits (rare) is read again by the json module, whose integer hook refuses one.
    """

    def parse_body(self, request: HttpRequest) -> Any:
        data = orjson.loads(request.body)
        if _LONG_DIGITS.search(request.body):
            json.loads(request.body, parse_int=_int64)
        return data


api = NinjaAPI(
    title="Notifications API",
    version="1",
    description="Publish notifications, read an inbox, manage subscriptions, get a WebSocket ticket. See docs/api.md.",
    urls_namespace="api-v1",
    parser=StrictJsonParser(),
    # The default for every operation (publish overrides it); also makes the docs page carry a CSRF token for sessions.
    auth=READ,
)
api.add_router("", publish.router)
api.add_router("", me.router)
api.add_router("", inbox_state.router)
api.add_router("", away.router)
api.add_router("", users.router)
api.add_router("", webhooks.router)


def error_response(request: HttpRequest, status: int, code: str, message: str, fields: dict[str, str] | None = None) -> HttpResponse:
    response = api.create_response(request, {"code": code, "message": message, "fields": fields or {}}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="notifications"'
    return response


def rate_limited(request: HttpRequest, retry_after: int) -> HttpResponse:
    response = error_response(request, 429, "rate_limited", rate_limits.message(retry_after))
    response["Retry-After"] = str(retry_after)
    return response


def limited_per_address(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Every /api/v1/ request counts against its client address's limit before anything is done for it: a bad token too."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        address = rate_limits.client_address(request)
        retry_after = rate_limits.hit(request, group="api_address", key=address, rate=conf.get().rate_limits.api_address)
        if retry_after is not None:
            return rate_limited(request, retry_after)
        return view(request, *args, **kwargs)

    return wrapper


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    # ninja's locations: ("body", "payload", "title"), ("query", "limit"), ("header", "Idempotency-Key")
    # Union members add their type as a location part ("constrained-int"): not a field.
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith(("constrained-", "function-"))))]
    if parts[:1] == ["body"] and len(parts) >= 2:
        parts = parts[2:] or ["body"]
    elif len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    fields: dict[str, str] = {}
    for error in exc.errors:
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        path = _field_path(error.get("loc", ()))
        fields[path] = f"{fields[path]}; {message}" if path in fields else message
    summary = "; ".join(f"{k}: {v}" for k, v in list(fields.items())[:3])
    return error_response(request, 422, "invalid", f"invalid input ({summary})", fields)


def _service_error(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    return error_response(request, exc.status, exc.code, exc.message, exc.fields)


def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(request, 401, "unauthenticated", "send 'Authorization: Bearer <token>' or log in")


def _throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
    # From the per-caller throttles (limits.py), which always say how long to wait.
    return rate_limited(request, math.ceil(exc.wait or 1))


def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    return error_response(request, exc.status_code, code, exc.message)


def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, "not_found", "not found")


def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_response(request, 413, "too_large", "the request body is too large")


def _database_error(request: HttpRequest, exc: OperationalError) -> HttpResponse:
    return unavailable_response() if availability.is_down_error(exc) else _unexpected(request, exc)


def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    # Never the request's headers: they may carry a token.
    log.error("API error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(request, 500, "server_error", "something went wrong on our side; nothing was half written")


_HANDLERS: dict[type[Exception], Callable[[HttpRequest, Any], HttpResponse]] = {
    ValidationError: _validation_error,
    ServiceError: _service_error,
    AuthenticationError: _unauthenticated,
    Throttled: _throttled,
    HttpError: _http_error,
    Http404: _not_found,
    RequestDataTooBig: _too_big,
    OperationalError: _database_error,
    Exception: _unexpected,
}
for _exc, _handler in _HANDLERS.items():
    api.add_exception_handler(_exc, _handler)

__all__ = ["api", "error_response", "limited_per_address"]
