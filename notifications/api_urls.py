"""The HTTP API under /api/v1/ (with /openapi.json and /docs), and /healthz, /readyz, /metrics outside it."""

from django.urls import URLPattern, URLResolver, include, path, re_path

from .api import api, limited_per_address, stream
from .api.health import healthz, json_errors, metrics, not_found, readyz

_api_patterns, _app_name, _namespace = api.urls
# ninja builds its 405 before any of its hooks run: wrap its views for the JSON body (docs/decisions/0009).
# The per-address limit goes before ninja's authentication, which its throttles follow (docs/decisions/0013).
for _pattern in _api_patterns:
    if isinstance(_pattern, URLPattern):
        _pattern.callback = json_errors(limited_per_address(_pattern.callback))

urlpatterns: list[URLPattern | URLResolver] = [
    # Async views outside ninja: the event stream and the frames its clients POST (api/stream.py).
    path("api/v1/me/stream", stream.stream, name="me-stream"),
    path("api/v1/me/frames", stream.frames, name="me-frames"),
    path("api/v1/", include((_api_patterns, _app_name), namespace=_namespace)),
    re_path(r"^api/v1/", not_found),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]
