"""Static files as project/asgi.py serves them, through a real daphne process."""

from __future__ import annotations

import http.client

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
