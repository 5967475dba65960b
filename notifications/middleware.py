"""A request or socket that finds the database down: 503 `unavailable` with Retry-After, or close 4503."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

from . import availability
from .protocol import CLOSE_UNAVAILABLE


def unavailable_response() -> JsonResponse:
    body = {"code": "unavailable", "message": "the database is unavailable; retry shortly", "fields": {}}
    response = JsonResponse(body, status=503)
    response["Retry-After"] = str(availability.RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware(MiddlewareMixin):
    """For the views outside the API (the API's own handler answers the same, api/__init__.py)."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return unavailable_response() if availability.is_down_error(exception) else None


async def close_socket_unavailable(receive: Any, send: Any) -> None:
    """Accept, then close 4503: a refused handshake reads as 403, which clients take as final."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE, "reason": "server unavailable, back off and retry"})
