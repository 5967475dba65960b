"""Static files as project/asgi.py serves them, through a real daphne process."""

from __future__ import annotations

import http.client
from typing import Any

import pytest

from tests.conftest import DaphneServer

pytestmark = pytest.mark.server

OUT_OF_THE_ROOTS = [
    "/static/../project/settings.py",
    "/static/notifications/../../project/settings.py",
    "/static/%2e%2e/project/settings.py",
]


def get(server: DaphneServer, path: str) -> tuple[int, bytes]:
    # http.client sends the path as given, like `curl --path-as-is`: nothing normalises the "..".
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_raw_path_out_of_the_static_roots_is_404_with_no_traceback(daphne: DaphneServer) -> None:
    logged_before = daphne.log.stat().st_size
    for path in OUT_OF_THE_ROOTS:
        status, body = get(daphne, path)
        assert (status, b"SECRET_KEY" in body) == (404, False), path
    status, body = get(daphne, "/static/notifications/client.js")
    assert status == 200 and b"NotificationClient" in body
    status, body = get(daphne, "/static/notifications/favicon.svg")  # where /favicon.ico leads (test_views)
    assert status == 200 and body.startswith(b"<svg")
    daphne.stop()  # everything it logged is in the file
    log = daphne.log.read_bytes()[logged_before:].decode()
    assert "Traceback" not in log and "SuspiciousFileOperation" not in log, log


def test_a_static_path_with_a_trailing_slash_is_404(daphne: DaphneServer) -> None:
    assert get(daphne, "/static/notifications/client.js/")[0] == 404
    assert get(daphne, "/static/notifications/")[0] == 404


def test_the_modules_carry_cors_for_an_apps_origin_and_no_other(daphne_factory: Any) -> None:
    """An app's page on NOTIFY_ALLOWED_ORIGINS loads widget.js and the modules it imports as module scripts."""
    app = "http://127.0.0.1:9"
    server = daphne_factory(NOTIFY_ALLOWED_ORIGINS=app)
    for name in ("widget.js", "client.js", "links.js"):
        assert cors_origin(server, f"/static/notifications/{name}", app) == app
    assert cors_origin(server, "/static/notifications/widget.js", "http://evil.example") is None


def cors_origin(server: DaphneServer, path: str, origin: str) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Origin": origin})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, path
        return response.getheader("Access-Control-Allow-Origin")
    finally:
        conn.close()
