"""A socket stands on the credential that opened it: a ticket's socket on what minted the ticket, checked every heartbeat."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from notifications import auth, selectors, services
from tests.api.conftest import API
from tests.test_consumer import TIMEOUT, closed_with, connect, fast, stop_hub, welcome  # noqa: F401 (fast, stop_hub: fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


async def close_code(ws: Any) -> int:
    """The close code, within a few heartbeats (each heartbeat frame would otherwise keep closed_with waiting)."""
    async with asyncio.timeout(TIMEOUT):
        return await closed_with(ws)


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def ticket_from(client: Client, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.post(API + "/ws-ticket", headers=headers)
    assert response.status_code == 201, response.content
    return str(response.json()["ticket"])


def cookie_headers(client: Client) -> list[tuple[bytes, bytes]]:
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return [(b"cookie", cookie), (b"origin", b"http://localhost"), (b"host", b"localhost")]


def change_password(user: Any) -> None:
    user.set_password("a new one")
    user.save()


# --- tickets minted by a token ------------------------------------------------------------


@pytest.mark.usefixtures("fast")
async def test_revoking_the_token_that_minted_a_ticket_closes_its_socket(user: Any) -> None:
    issued = await database_sync_to_async(auth.issue_token)(user=user, scopes=["read"])
    ticket = await database_sync_to_async(ticket_from)(Client(), issued.secret)
    ws, frame = await welcome(None, query=f"ticket={ticket}")
    assert frame["user"] == user.id
    await database_sync_to_async(auth.revoke_token)(issued.token)
    assert await close_code(ws) == 4401


async def test_a_ticket_is_refused_once_the_token_that_minted_it_is_revoked(user: Any) -> None:
    issued = await database_sync_to_async(auth.issue_token)(user=user, scopes=["read"])
    ticket = await database_sync_to_async(ticket_from)(Client(), issued.secret)
    await database_sync_to_async(auth.revoke_token)(issued.token)
    assert await close_code(await connect(query=f"ticket={ticket}")) == 4401


# --- sessions: logout and password change, as Django's auth judges them ----------------------


@pytest.mark.usefixtures("fast")
async def test_a_password_change_closes_the_sessions_socket_as_it_logs_out_its_http(user: Any) -> None:
    browser = await database_sync_to_async(logged_in)(user)
    ws, _ = await welcome(None, headers=cookie_headers(browser))
    await database_sync_to_async(change_password)(user)
    assert await close_code(ws) == 4401
    assert (await database_sync_to_async(browser.get)(API + "/me/unread-count")).status_code == 401


@pytest.mark.usefixtures("fast")
async def test_a_session_tickets_socket_closes_on_a_password_change(user: Any) -> None:
    browser = await database_sync_to_async(logged_in)(user)
    ws, _ = await welcome(None, query=f"ticket={await database_sync_to_async(ticket_from)(browser)}")
    await database_sync_to_async(change_password)(user)
    assert await close_code(ws) == 4401


async def test_a_session_ticket_is_refused_after_logout_or_a_password_change(user: Any) -> None:
    browser = await database_sync_to_async(logged_in)(user)
    before_logout = await database_sync_to_async(ticket_from)(browser)
    await database_sync_to_async(browser.logout)()
    assert await close_code(await connect(query=f"ticket={before_logout}")) == 4401

    browser = await database_sync_to_async(logged_in)(user)
    before_change = await database_sync_to_async(ticket_from)(browser)
    await database_sync_to_async(change_password)(user)
    assert await close_code(await connect(query=f"ticket={before_change}")) == 4401


def test_a_session_is_invalid_once_gone_tampered_or_its_user_inactive(make_user: Any) -> None:
    users = {name: make_user() for name in ("alive", "gone", "tampered", "inactive")}
    keys = {name: logged_in(u).cookies["sessionid"].value for name, u in users.items()}
    SessionStore(keys["gone"]).delete()
    store = SessionStore(keys["tampered"])
    store[HASH_SESSION_KEY] = "not the hash"
    store.save()
    users["inactive"].is_active = False
    users["inactive"].save()
    invalid = auth.invalid_credentials({("session", key) for key in keys.values()})
    assert invalid == {("session", keys[name]) for name in ("gone", "tampered", "inactive")}


def test_a_session_hashed_under_a_fallback_secret_key_still_holds(user: Any, settings: Any) -> None:
    """As in django.contrib.auth.get_user: rotating SECRET_KEY with the old one in SECRET_KEY_FALLBACKS logs nobody out."""
    old = settings.SECRET_KEY
    credential = ("session", logged_in(user).cookies["sessionid"].value)
    settings.SECRET_KEY = "a-rotated-secret-key-" + "x" * 40
    settings.SECRET_KEY_FALLBACKS = [old]
    assert auth.invalid_credentials({credential}) == set()
    settings.SECRET_KEY_FALLBACKS = []
    assert auth.invalid_credentials({credential}) == {credential}


def test_an_operators_ticket_holds_while_its_user_is_active(user: Any) -> None:
    """`manage.py listen` mints tickets with no token or session: they stand on the user."""
    redeemed = auth.redeem_ticket(auth.issue_ticket(user=user))
    assert redeemed is not None and redeemed.credential == ("user", str(user.id))
    ticket = auth.issue_ticket(user=user)
    user.is_active = False
    user.save()
    assert auth.redeem_ticket(ticket) is None


# --- the handshake's token check --------------------------------------------------------------


def test_the_sockets_token_check_answers_as_the_http_one(make_user: Any) -> None:
    """authenticate_socket_token is plain SQL for speed; it must keep authenticate_token's rule."""
    owners = {name: make_user() for name in ("live", "revoked", "inactive", "used")}
    issued = {name: auth.issue_token(user=u, scopes=["read", "publish"]) for name, u in owners.items()}
    auth.revoke_token(issued["revoked"].token)
    owners["inactive"].is_active = False
    owners["inactive"].save()
    auth.record_token_use([issued["used"].token.pk])
    services.notify(recipient_ids=[owners["used"].id], content=services.Content(title="a head to read"))
    secrets = {name: i.secret for name, i in issued.items()} | {"unknown": "ntf_00000000_nope", "not ours": "abc"}
    for name, secret in secrets.items():
        on_socket = auth.authenticate_socket_token(secret)  # first: the HTTP check records the use it judges
        over_http = auth.authenticate_token(secret)
        assert (on_socket is None) == (over_http is None), name
        if on_socket is not None and over_http is not None:
            assert (on_socket.token_id, on_socket.user_id, on_socket.scopes) == (over_http.pk, over_http.user_id, over_http.scopes)
            assert on_socket.use_is_stale == auth.use_is_stale(over_http) == (name != "used"), name
            assert on_socket.stream == selectors.stream_state(on_socket.user_id), name
    assert {n for n in secrets if auth.authenticate_socket_token(secrets[n])} == {"live", "used"}
