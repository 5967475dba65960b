"""What a host project plugs in to embed the app (docs/integrate.md).

    INSTALLED_APPS = [..., *notifications.embed.INSTALLED_APPS]
    urlpatterns = [..., path("notifications/", include("notifications.urls"))]
    application = ProtocolTypeRouter({
        "http": notifications.embed.http_application(get_asgi_application()),
        "websocket": notifications.embed.websocket_application(),
    })

Imported by settings modules, so nothing here touches a model or the settings at import time.
"""

from __future__ import annotations

from typing import Any

# The apps the notifications app stands on, and the app itself, in the order to splice in.
# django.contrib.auth, contenttypes and sessions are the host's own (checks.py asks for them).
INSTALLED_APPS = [
    "channels",
    "ninja",  # serves Swagger UI from its own static files: the API docs page works offline
    "django_tasks",
    "django_tasks_db",  # the away channels' task queue, in the database (docs/decisions/0008)
    "notifications",
]


def websocket_application() -> Any:
    """The `"websocket"` entry of the host's ProtocolTypeRouter: /ws/notifications/, authenticated, origin checked.

    A session cookie counts only behind the origin check; a Bearer token or a
    single-use ticket without it (auth.WebsocketAuthMiddleware). Call it after
    Django is set up (after get_asgi_application()), as any consumer import needs.
    """
    from channels.routing import URLRouter

    from .auth import WebsocketAuthMiddleware
    from .routing import websocket_urlpatterns

    return WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns))


def http_application(django_app: Any) -> Any:
    """The `"http"` entry: the host's Django app, with the event stream served in front of it.

    Optional: without it every request still works (Django's views serve the stream);
    with it the stream and its own frames skip Django's middleware and the token
    lookup (api/stream.event_stream_application). Call it after Django is set up, as
    websocket_application().
    """
    from .api.stream import event_stream_application

    return event_stream_application(django_app)
