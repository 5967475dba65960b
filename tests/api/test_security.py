"""Who may call the HTTP API (notifications/api/security.py): Bearer tokens with scopes, sessions with CSRF."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client

from notifications import auth
from tests.api.conftest import API, Api, assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


def test_no_credentials_is_401_json(user: Any) -> None:
    for r in (Api().get("/me/notifications"), Api().post("/notifications", {"users": [user.id], "title": "x"})):
        assert_error(r, 401, "unauthenticated")
        assert r["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer ntf_nope_nope", "Bearer ", "Basic dXNlcjpwdw==", "ntf_just_the_token"])
def test_bad_authorization_is_401(header: str) -> None:
    r = Client().get(API + "/me/unread-count", headers={"Authorization": header})
    assert_error(r, 401, "unauthenticated")


def test_revoked_token_is_401(user: Any) -> None:
    issued = auth.issue_token(user=user, scopes=["read"])
    assert Api(issued.secret).get("/me/unread-count").status_code == 200
    auth.revoke_token(issued.token)
    assert_error(Api(issued.secret).get("/me/unread-count"), 401, "unauthenticated")


def test_inactive_users_token_is_401(user: Any, token_for: Any) -> None:
    api = Api(token_for(user))
    user.is_active = False
    user.save()
    assert_error(api.get("/me/unread-count"), 401, "unauthenticated")


def test_scopes_are_enforced_with_403(user: Any, token_for: Any) -> None:
    read_only = Api(token_for(user, ("read",)))
    publish_only = Api(token_for(user, ("publish",)))
    assert_error(read_only.post("/notifications", {"users": [user.id], "title": "x"}), 403, "insufficient_scope")
    assert_error(read_only.post("/notifications/batch", {"notifications": [{"users": [user.id], "title": "x"}]}), 403, "insufficient_scope")
    for path in ("/me/notifications", "/me/unread-count", "/topics", "/me/subscriptions"):
        assert_error(publish_only.get(path), 403, "insufficient_scope")
    assert_error(publish_only.post("/ws-ticket"), 403, "insufficient_scope")


def test_session_reads_and_needs_csrf_for_writes(user: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.get(API + "/me/unread-count").json() == {"unread": 0, "unseen": 0, "head_seq": 0}
    r = browser.post(API + "/me/notifications/read", {"all": True}, content_type="application/json")
    assert_error(r, 403, "csrf_failed")
    browser.get(API + "/docs")  # the docs page sets the CSRF cookie, so "Try it out" works with a session
    token = browser.cookies["csrftoken"].value
    r = browser.post(API + "/me/notifications/read", {"all": True}, content_type="application/json", headers={"X-CSRFToken": token})
    assert r.status_code == 200


def test_session_publish_needs_staff(user: Any, make_user: Any) -> None:
    browser = Client()
    browser.force_login(user)
    payload = {"users": [user.id], "title": "x"}
    assert_error(browser.post(API + "/notifications", payload, content_type="application/json"), 403, "forbidden")
    staff = Client()
    staff.force_login(make_user(is_staff=True))
    assert staff.post(API + "/notifications", payload, content_type="application/json").status_code == 201


def test_a_token_is_never_logged(user: Any, caplog: Any, settings: Any) -> None:
    settings.DEBUG = True  # ninja's own bearer class logs an unexpected header under DEBUG
    secret = auth.issue_token(user=user, scopes=["read"]).secret
    caplog.set_level(logging.DEBUG)
    for header in (f"Token {secret}", f"Bearer {secret}x", f"Bearer {secret}"):
        Client().get(API + "/me/unread-count", headers={"Authorization": header})
    Client().post(API + "/notifications", {"title": 1}, content_type="application/json", headers={"Authorization": f"Bearer {secret}"})
    assert secret not in caplog.text
    assert secret[:20] not in caplog.text
