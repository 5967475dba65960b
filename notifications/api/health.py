"""Outside /api/v1: /healthz (the process answers), /readyz (PostgreSQL and Redis answer), /metrics (Prometheus text).

/metrics is unauthenticated, like most scrape targets: keep it on the
internal network (the proxy should not route it). It reads the presence
reports of every server process and one aggregate over the per-user counters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from .. import presence, selectors
from ..conf import redis_url

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "checks": {}})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check(_database), "redis": _check(_redis) if redis_url() else "not configured"}
    ready = all(v in {"ok", "not configured"} for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def _check(probe: Callable[[], None]) -> str:
    try:
        probe()
    except Exception as e:
        log.warning("readiness probe %s failed: %s", probe.__name__, type(e).__name__)
        return f"error: {type(e).__name__}"
    return "ok"


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _redis() -> None:
    import redis

    with redis.from_url(redis_url(), socket_connect_timeout=1, socket_timeout=1) as client:
        client.ping()


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    lines: list[str] = []
    try:
        reports = presence.reports()
        presence_up = 1
    except Exception as e:
        log.warning("metrics: presence reports unavailable: %s", type(e).__name__)
        reports, presence_up = [], 0
    _metric(lines, "notify_presence_up", "gauge", "1 if the presence reports of the server processes could be read.", [({}, presence_up)])
    _metric(lines, "notify_nodes", "gauge", "Server processes that reported in the last 15 seconds.", [({}, len(reports))])
    _metric(
        lines, "notify_connections", "gauge", "Open WebSocket connections, per server process.",
        [({"node": r.node}, r.connections) for r in reports],
    )  # fmt: skip
    _metric(
        lines, "notify_pushes_sent_total", "counter", "Notifications pushed to sockets, per server process since it started.",
        [({"node": r.node}, r.pushes_sent) for r in reports],
    )  # fmt: skip
    totals = selectors.totals()
    _metric(lines, "notify_published_total", "counter", "Notifications ever stored (one per recipient).", [({}, totals.published)])
    _metric(lines, "notify_unread", "gauge", "Unread notifications across all users.", [({}, totals.unread)])
    _metric(lines, "notify_streams", "gauge", "Users that have received at least one notification.", [({}, totals.streams)])
    _metric(lines, "notify_topics", "gauge", "Topics.", [({}, totals.topics)])
    return HttpResponse("\n".join(lines) + "\n", content_type=PROMETHEUS_CONTENT_TYPE)


def _metric(lines: list[str], name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@csrf_exempt  # it changes nothing; else a token's POST to a wrong path got Django's HTML CSRF page
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Anything under /api/v1/ that no endpoint matched."""
    return JsonResponse({"code": "not_found", "message": f"no endpoint {request.path}", "fields": {}}, status=404)


def json_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """ninja answers a wrong method with an empty 405; give it the JSON error body every other error has."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith("application/json"):
            body = {"code": "method_not_allowed", "message": f"{request.method} is not allowed here", "fields": {}}
            allowed = response.get("Allow", "")
            response = JsonResponse(body, status=405)
            response["Allow"] = allowed
        return response

    return wrapper
