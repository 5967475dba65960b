"""Users named by the app's own ids (notifications/api/users.py), and what a connection token may do over HTTP."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from django.contrib.auth import get_user_model

from notifications import services
from notifications.models import ApiToken, Notification, QuietHours
from tests.api.conftest import Api, assert_error
from tests.connection import APP_ORIGIN, beside_an_app, sign

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords", "beside_an_app")]
__all__ = ["beside_an_app"]


@pytest.fixture
def app_backend(make_user: Any, token_for: Any) -> Api:
    return Api(token_for(make_user("app-backend"), ("users", "publish")))


def test_put_creates_a_user_by_the_apps_id_then_updates_only_what_is_given(app_backend: Api) -> None:
    created = app_backend.put("/users/u_42", {"email": "ana@example.com", "name": "Ana", "locale": "fr-CA", "time_zone": "Europe/Paris"})
    assert created.status_code == 201, created.content
    assert created.json() == {"username": "u_42", "email": "ana@example.com", "name": "Ana", "locale": "fr-CA", "time_zone": "Europe/Paris"}
    updated = app_backend.put("/users/u_42", {"name": "Ana B."})
    assert updated.status_code == 200
    assert updated.json()["name"] == "Ana B." and updated.json()["email"] == "ana@example.com"
    assert app_backend.get("/users/u_42").json() == updated.json()


def test_publishing_to_the_apps_ids_reaches_those_users(app_backend: Api) -> None:
    app_backend.put("/users/u_1", {})
    response = app_backend.post("/notifications", {"users": ["u_1"], "title": "hello"})
    assert response.status_code == 201, response.content
    assert Notification.objects.filter(recipient__username="u_1", title="hello").count() == 1


def test_the_users_time_zone_moves_their_quiet_hours_with_it(app_backend: Api) -> None:
    services.put_user(username="u_tz", fields=services.UserFields())
    pk = get_user_model().objects.get(username="u_tz").pk
    QuietHours.objects.create(user_id=pk, time_zone="UTC", start="22:00", end="07:00")
    app_backend.put("/users/u_tz", {"time_zone": "Asia/Tokyo"})
    assert QuietHours.objects.get(user_id=pk).time_zone == "Asia/Tokyo"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"locale": "english please"}, "locale"),
        ({"name": "x" * 151}, "name"),
        ({"role": "admin"}, "role"),
    ],
)
def test_a_bad_field_is_a_422_naming_it_and_creates_nobody(app_backend: Api, body: dict[str, Any], field: str) -> None:
    body = assert_error(app_backend.put("/users/u_bad", body), 422, "invalid")
    assert field in body["fields"]
    assert app_backend.get("/users/u_bad").status_code == 404


def test_a_username_the_user_model_refuses_is_a_422(app_backend: Api) -> None:
    assert_error(app_backend.put("/users/has space", {}), 422, "invalid")


def test_delete_removes_the_user_and_everything_stored_for_them(app_backend: Api) -> None:
    app_backend.put("/users/u_gone", {})
    app_backend.post("/notifications", {"users": ["u_gone"], "title": "soon gone"})
    assert app_backend.delete("/users/u_gone").status_code == 204
    assert not Notification.objects.filter(title="soon gone").exists()
    assert_error(app_backend.delete("/users/u_gone"), 404, "not_found")


def test_the_users_endpoints_need_the_users_scope(make_user: Any, token_for: Any) -> None:
    publisher = Api(token_for(make_user(), ("publish", "read")))
    assert_error(publisher.put("/users/u_1", {}), 403, "insufficient_scope")
    assert_error(Api().put("/users/u_1", {}), 401, "unauthenticated")


# --- a connection token over HTTP ------------------------------------------------------


def test_a_connection_token_reads_its_users_own_inbox(app_backend: Api) -> None:
    app_backend.put("/users/u_7", {})
    app_backend.post("/notifications", {"users": ["u_7"], "title": "for seven"})
    page = Api(sign("u_7")).get("/me/notifications").json()
    assert [n["title"] for n in page["items"]] == ["for seven"]


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: sign("u_7", secret="some-other-secret-of-at-least-32-chars"), id="forged"),
        pytest.param(lambda: sign("u_7", expires_in=-120), id="expired"),
        pytest.param(lambda: sign("u_7", expires_in=3 * 24 * 3600), id="exp-too-far"),
        pytest.param(lambda: sign("nobody"), id="unknown-user"),
        pytest.param(lambda: jwt.encode({"sub": "u_7", "exp": int(time.time()) + 600}, "", algorithm="none"), id="alg-none"),
        pytest.param(lambda: sign("u_7")[:-4] + "AAAA", id="bad-signature"),
    ],
)
def test_a_bad_connection_token_is_a_401(app_backend: Api, token: Any) -> None:
    app_backend.put("/users/u_7", {})
    assert_error(Api(token()).get("/me/notifications"), 401, "unauthenticated")


def test_a_connection_token_cannot_publish_or_manage_users(app_backend: Api) -> None:
    app_backend.put("/users/u_7", {})
    browser = Api(sign("u_7"))
    assert_error(browser.post("/notifications", {"users": ["u_7"], "title": "x"}), 403, "insufficient_scope")
    assert_error(browser.put("/users/u_8", {}), 403, "insufficient_scope")
    assert ApiToken.objects.filter(user__username="u_7").count() == 0


def test_cors_answers_the_apps_origin_and_no_other(app_backend: Api) -> None:
    client = app_backend.client
    preflight = {"Origin": APP_ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = client.options("/api/v1/me/notifications", headers=preflight)
    assert allowed["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "authorization" in allowed["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed  # a token, never the cookie
    foreign = client.options("/api/v1/me/notifications", headers={**preflight, "Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in foreign
