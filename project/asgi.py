"""ASGI entry point: HTTP through Django (static files included), WebSocket through the notification consumer."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Django must be set up before the consumer's imports touch the models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.core.exceptions import SuspiciousFileOperation  # noqa: E402
from django.http import FileResponse, Http404, HttpRequest, HttpResponse  # noqa: E402

from notifications import conf  # noqa: E402
from notifications.embed import http_application, websocket_application  # noqa: E402


class StaticFiles(ASGIStaticFilesHandler):
    """Django's static handler, but a path out of the static roots is a 404.

    A raw `/static/../project/settings.py` (daphne does not normalise paths) makes the
    finders raise SuspiciousFileOperation, which this handler, unlike Django's request
    handler, does not catch: it was a 500 with a traceback.
    """

    def serve(self, request: HttpRequest) -> HttpResponse | FileResponse:
        if request.path.endswith("/"):
            raise Http404("no such static file")  # the finders strip it: `client.js/` served the file
        try:
            response = super().serve(request)
        except SuspiciousFileOperation:
            raise Http404("no such static file") from None
        # An app's pages on NOTIFY_ALLOWED_ORIGINS load widget.js and client.js as module scripts (CORS).
        origin = request.headers.get("Origin")
        if origin is not None and origin in conf.get().allowed_origins:
            response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
        return response


application = ProtocolTypeRouter(
    {
        # One process serves the page, its client.js and the socket; put a CDN
        # or proxy in front for heavy static traffic.
        "http": StaticFiles(http_application(django_asgi_app)),
        "websocket": websocket_application(),
    }
)
