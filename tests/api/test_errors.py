"""The HTTP API as a whole (notifications/api/__init__.py, api_urls.py): parsing, error answers, unknown routes, the docs."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client

from notifications import selectors
from notifications.models import Notification
from tests.api.conftest import API, Api, assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


@pytest.mark.parametrize("raw", ["{not json", '{"users": [1], "title": "x", "data": {"n": NaN}}', '{"users": [1], "title": "\\ud800"}'])
def test_unparseable_body_is_400(publisher: Api, raw: str) -> None:
    assert_error(publisher.post("/notifications", raw=raw), 400, "bad_request")


def test_oversized_body_is_413(publisher: Api, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert_error(publisher.post("/notifications", {"users": [1], "title": "x", "body": "y" * 2000}), 413, "too_large")


def test_unknown_route_and_wrong_method_are_json(reader: Api) -> None:
    assert_error(reader.get("/nope"), 404, "not_found")
    r = reader.delete("/me/unread-count")
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r["Allow"]


def test_an_unexpected_error_is_a_json_500_and_logs_no_token(reader: Api, monkeypatch: Any, caplog: Any) -> None:
    def broken(user_id: int) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "stream_state", broken)
    caplog.set_level(logging.DEBUG)
    r = reader.get("/me/unread-count")
    assert_error(r, 500, "server_error")
    assert "GET /api/v1/me/unread-count" in caplog.text and "RuntimeError" in caplog.text
    assert reader.headers["Authorization"].split()[1] not in caplog.text


def test_openapi_schema_and_offline_docs_page() -> None:
    schema = Client().get(API + "/openapi.json").json()
    assert {"/api/v1/notifications", "/api/v1/notifications/batch", "/api/v1/me/notifications", "/api/v1/ws-ticket"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["BearerToken"] == {"type": "http", "scheme": "bearer"}
    page = Client().get(API + "/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert Client().get("/static/ninja/swagger-ui-bundle.js").status_code in {200, 404}  # served by the static handler under ASGI


@pytest.mark.parametrize("number", ["9223372036854775808", "-9223372036854775809", "18446744073709551616", "1" + "0" * 40])
def test_an_integer_past_64_bits_anywhere_in_the_body_is_400_not_silently_changed(publisher: Api, user: Any, number: str) -> None:
    for raw in (
        f'{{"users": [{user.id}], "title": "x", "data": {{"n": {number}}}}}',
        f'{{"users": [{user.id}], "title": "x", "data": {{"deep": [1, {{"x": [2.5, {number}]}}]}}}}',
        f'{{"users": [{user.id}, {number}], "title": "x"}}',
    ):
        assert_error(publisher.post("/notifications", raw=raw), 400, "bad_request")
    assert not Notification.objects.exists()


def test_64_bit_integers_and_long_digit_strings_are_stored_exactly(publisher: Api, user: Any) -> None:
    data = {"max": 2**63 - 1, "min": -(2**63), "float": 2.5, "digits": "1" * 40}
    r = publisher.post("/notifications", {"users": [user.id], "title": "x", "data": data})
    assert r.status_code == 201, r.content
    assert Notification.objects.get(recipient=user).data == data


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_an_unknown_path_is_a_json_404_for_a_token_with_every_method(reader: Api, method: str) -> None:
    # enforce_csrf_checks: as a real server does; the CSRF middleware answered these with its HTML page.
    client = Client(enforce_csrf_checks=True)
    r = getattr(client, method)(API + "/no/such/endpoint", "{}", content_type="application/json", headers=reader.headers)
    assert_error(r, 404, "not_found")
