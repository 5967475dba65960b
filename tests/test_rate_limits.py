"""HTTP abuse limits (notifications/rate_limits.py): the API per token, user and address, and the login form.

Limits here are per hour, not per minute: django-ratelimit counts in fixed windows, and a window that
ended between a test's few requests would start its count again.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from project.settings import env_rate
from tests.api.conftest import API, Api, assert_error
from tests.conftest import free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

HOUR = 3600


@pytest.fixture
def limits(settings: Any) -> Any:
    """Set some of NOTIFY_RATE_* (by their NOTIFICATIONS keys) for one test."""

    def set_limits(**rates: str | int) -> None:
        settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, **rates}

    return set_limits


@pytest.fixture
def publisher(make_user: Any, token_for: Any) -> Api:
    return Api(token_for(make_user("publisher-svc"), ("publish",)))


def assert_limited(response: Any) -> dict[str, Any]:
    body = assert_error(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= HOUR
    assert response["Retry-After"] in body["message"]
    return body


# --- the API, per token and per user ------------------------------------------------------


def test_publish_is_limited_per_token(limits: Any, make_user: Any, token_for: Any, user: Any) -> None:
    limits(RATE_PUBLISH="3/h")
    service = make_user("publisher-svc")
    first, second = Api(token_for(service, ("publish",))), Api(token_for(service, ("publish",)))
    for i in range(3):
        assert first.post("/notifications", {"users": [user.id], "title": f"n{i}"}).status_code == 201
    assert_limited(first.post("/notifications", {"users": [user.id], "title": "one too many"}))
    assert_limited(first.post("/notifications/batch", {"notifications": [{"users": [user.id], "title": "batch"}]}))
    # Another token, even of the same service, has its own budget.
    assert second.post("/notifications", {"users": [user.id], "title": "other token"}).status_code == 201
    assert user.notifications.count() == 4  # nothing refused was stored


def test_a_refused_request_is_counted_before_its_body_is_read(limits: Any, publisher: Api) -> None:
    limits(RATE_PUBLISH="2/h")
    for _ in range(2):
        assert_error(publisher.post("/notifications", raw="not json"), 400, "bad_request")
    assert_limited(publisher.post("/notifications", raw="not json"))


def test_tickets_are_limited_per_user_across_their_tokens(limits: Any, user: Any, make_user: Any, token_for: Any) -> None:
    limits(RATE_TICKETS="2/h")
    web, mobile = Api(token_for(user, ("read",))), Api(token_for(user, ("read",)))
    assert web.post("/ws-ticket").status_code == 201
    assert mobile.post("/ws-ticket").status_code == 201
    assert_limited(web.post("/ws-ticket"))
    assert_limited(mobile.post("/ws-ticket"))
    assert Api(token_for(make_user(), ("read",))).post("/ws-ticket").status_code == 201  # another user
    assert web.get("/me/unread-count").status_code == 200  # tickets have a budget of their own


def test_me_endpoints_share_one_limit_per_user_token_or_session(limits: Any, user: Any, make_user: Any, token_for: Any) -> None:
    limits(RATE_ME="4/h")
    reader = Api(token_for(user, ("read",)))
    browser = Client()
    browser.force_login(user)
    assert reader.get("/me/unread-count").status_code == 200
    assert reader.get("/me/notifications").status_code == 200
    assert reader.get("/me/preferences").status_code == 200
    assert browser.get(f"{API}/me/subscriptions").status_code == 200
    assert_limited(reader.get("/topics"))
    assert_limited(browser.get(f"{API}/me/unread-count"))
    assert Api(token_for(make_user(), ("read",))).get("/me/unread-count").status_code == 200


# --- the API, per client address ------------------------------------------------------------


def test_any_api_request_counts_per_address_a_bad_token_too(limits: Any) -> None:
    limits(RATE_API_ADDRESS="3/h")
    guesser = Api("ntf_guess", Client(REMOTE_ADDR="203.0.113.7"))
    for _ in range(3):
        assert_error(guesser.get("/me/unread-count"), 401, "unauthenticated")
    assert_limited(guesser.get("/me/unread-count"))
    # Sent by the client itself, X-Forwarded-For changes nothing without a trusted proxy.
    assert_limited(guesser.client.get(f"{API}/me/unread-count", headers={**guesser.headers, "X-Forwarded-For": "198.51.100.1"}))
    assert_error(Api("ntf_guess", Client(REMOTE_ADDR="203.0.113.8")).get("/me/unread-count"), 401, "unauthenticated")


def test_behind_a_trusted_proxy_the_address_is_the_one_it_forwarded(limits: Any) -> None:
    limits(RATE_API_ADDRESS="2/h", TRUSTED_PROXIES=1)
    proxy = Client(REMOTE_ADDR="172.18.0.5")  # nginx: every request comes from it

    def get(client_address: str) -> Any:
        # What a client puts in the header is kept on the left; the proxy's entry is the last.
        return proxy.get(f"{API}/me/unread-count", headers={"X-Forwarded-For": f"10.9.9.9, {client_address}"})

    for _ in range(2):
        assert_error(get("198.51.100.1"), 401, "unauthenticated")
    assert_limited(get("198.51.100.1"))
    assert_error(get("198.51.100.2"), 401, "unauthenticated")


def test_client_address(settings: Any, rf: Any) -> None:
    from notifications.rate_limits import client_address

    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "TRUSTED_PROXIES": 0}
    assert client_address(rf.get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.0.0.1")) == "192.0.2.1"
    # One host, one IPv6 /64.
    assert client_address(rf.get("/", REMOTE_ADDR="2001:db8:1:2:aaaa::1")) == client_address(rf.get("/", REMOTE_ADDR="2001:db8:1:2::9"))
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "TRUSTED_PROXIES": 1}
    assert client_address(rf.get("/", REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="10.0.0.1, 192.0.2.9")) == "192.0.2.9"
    assert client_address(rf.get("/", REMOTE_ADDR="172.18.0.5")) == "172.18.0.5"
    # Not an address: never a key of the client's choosing.
    assert client_address(rf.get("/", REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="random-1")) == "172.18.0.5"


# --- the login form --------------------------------------------------------------------------


def test_login_locks_a_username_out_after_n_attempts_and_refuses_the_right_password_too(limits: Any, user: Any) -> None:
    limits(RATE_LOGIN_USERNAME="3/h")
    for i in range(3):
        browser = Client(REMOTE_ADDR=f"198.51.100.{i}")  # from anywhere: the username's count
        response = browser.post("/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 200 and "_auth_user_id" not in browser.session
    browser = Client(REMOTE_ADDR="198.51.100.200")
    response = browser.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= HOUR
    html = response.content.decode()
    assert f"Too many login attempts. Try again in {response['Retry-After']} seconds." in html
    assert 'value="alice"' in html  # the form is shown again with the username kept
    assert "_auth_user_id" not in browser.session
    assert Client().get("/inbox/").status_code == 302
    # Another user logs in from the same address.
    bob_password = "pw-bob"
    user.__class__.objects.create_user(username="bob", password=bob_password)
    response = browser.post("/login/", {"username": "bob", "password": bob_password})
    assert response.status_code == 302 and response["Location"] == "/inbox/"


def test_login_is_limited_per_address(limits: Any, make_user: Any) -> None:
    limits(RATE_LOGIN_ADDRESS="3/h")
    sprayer = Client(REMOTE_ADDR="203.0.113.9")
    for name in ["a", "b", "c"]:
        assert sprayer.post("/login/", {"username": name, "password": "wrong"}).status_code == 200
    assert sprayer.post("/login/", {"username": "d", "password": "wrong"}).status_code == 429
    dana = make_user("dana")
    assert Client(REMOTE_ADDR="203.0.113.10").post("/login/", {"username": "dana", "password": f"pw-{dana.username}"}).status_code == 302


def test_the_admin_login_shares_the_lockout(limits: Any, make_user: Any) -> None:
    limits(RATE_LOGIN_USERNAME="2/h")
    make_user("root", is_staff=True, is_superuser=True)
    for _ in range(2):
        Client().post("/login/", {"username": "root", "password": "wrong"})
    browser = Client()
    response = browser.post("/admin/login/", {"username": "root", "password": "pw-root"})
    assert "Too many login attempts" in response.content.decode()
    assert "_auth_user_id" not in browser.session


def test_the_login_page_still_shows_a_wrong_password(user: Any) -> None:
    response = Client().post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200 and "Please enter a correct username and password" in response.content.decode()


# --- configuration and failure ---------------------------------------------------------------


def test_rates_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_RATE_X", "100/5m")
    assert env_rate("NOTIFY_RATE_X", "1/s") == "100/5m"
    monkeypatch.setenv("NOTIFY_RATE_X", "off")
    assert env_rate("NOTIFY_RATE_X", "1/s") is None
    monkeypatch.setenv("NOTIFY_RATE_X", "")
    assert env_rate("NOTIFY_RATE_X", "1/s") == "1/s"
    monkeypatch.setenv("NOTIFY_RATE_X", "600 per minute")
    with pytest.raises(ImproperlyConfigured, match="NOTIFY_RATE_X"):
        env_rate("NOTIFY_RATE_X", "1/s")


def test_a_limit_set_off_is_never_hit(limits: Any, publisher: Api, user: Any) -> None:
    limits(RATE_PUBLISH=None, RATE_API_ADDRESS=None)
    for i in range(5):
        assert publisher.post("/notifications", {"users": [user.id], "title": f"n{i}"}).status_code == 201


def test_a_cache_that_is_down_lets_requests_through_and_is_logged_once(
    settings: Any, limits: Any, publisher: Api, user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A port nothing listens on: the Redis of the counters is down.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    limits(RATE_PUBLISH="1/h")
    for i in range(3):
        assert publisher.post("/notifications", {"users": [user.id], "title": f"n{i}"}).status_code == 201
    assert Client().post("/login/", {"username": "alice", "password": "pw-alice"}).status_code == 302
    warnings = [r for r in caplog.records if r.name == "notifications.rate_limits"]
    assert len(warnings) == 1 and "not counted" in warnings[0].getMessage()


# --- shared by every process ---------------------------------------------------------------


def _publish(base_url: str, token: str, user_id: int) -> tuple[int, dict[str, str], Any]:
    body = json.dumps({"users": [user_id], "title": "spread"}).encode()
    request = urllib.request.Request(f"{base_url}/api/v1/notifications", data=body, method="POST")
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


@pytest.mark.server
@pytest.mark.django_db(transaction=True)
def test_the_limit_is_shared_by_two_daphne_processes_on_redis(daphne_factory: Any, make_user: Any, token_for: Any) -> None:
    if not os.environ.get("REDIS_URL"):
        pytest.skip("processes share counts through Redis")
    nodes = [daphne_factory(NOTIFY_RATE_PUBLISH="4/h"), daphne_factory(NOTIFY_RATE_PUBLISH="4/h")]
    user = make_user()
    token = token_for(make_user("publisher-svc"), ("publish",))
    statuses = [_publish(nodes[i % 2].url, token, user.id)[0] for i in range(4)]
    assert statuses == [201] * 4  # two on each: neither process alone is at its limit
    for node in nodes:
        status, headers, body = _publish(node.url, token, user.id)
        assert status == 429 and body["code"] == "rate_limited"
        assert 1 <= int(headers["Retry-After"]) <= HOUR
    other = token_for(make_user("other-svc"), ("publish",))
    assert _publish(nodes[1].url, other, user.id)[0] == 201


@pytest.mark.skipif(not settings.REDIS_URL, reason="the counts live in local memory without Redis")
def test_every_request_thread_counts_through_one_redis_pool() -> None:
    """Django builds a cache per thread; each used to open its own Redis connection for every request."""
    from django.core.cache import caches

    def pool_of_a_new_thread() -> Any:
        found: list[Any] = []

        def look() -> None:
            cache: Any = caches["default"]  # this thread's own RedisCache instance
            found.append(cache._cache.get_client(write=True).connection_pool)

        thread = threading.Thread(target=look)
        thread.start()
        thread.join(10)
        return found[0]

    assert pool_of_a_new_thread() is pool_of_a_new_thread()
