"""The authorization matrix: user B against user A, over WebSocket and HTTP, every client frame and every endpoint of the me router.

Each probe runs twice for B: with A's ids, seqs and private topic, and with ones
that exist for nobody. Both must get the same answer (nothing is revealed), and
A's stream, notifications and subscriptions must not change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from notifications import auth, changes, services
from notifications.api import inbox_state, me
from notifications.models import Notification, Subscription, Topic, UserStream
from tests.api.conftest import Api
from tests.test_consumer import TIMEOUT, stop_hub, welcome  # noqa: F401 (stop_hub: an autouse fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

NOBODYS = 10**12  # an id or seq that exists for no one
NOBODYS_TOPIC = "nobodys-topic"


def unechoed(answer: Any, topic: str) -> str:
    """The answer with the topic the client named taken out: an error may quote it back, which reveals nothing."""
    return json.dumps(answer).replace(topic, "<topic>")


@dataclass(frozen=True)
class World:
    a: Any
    b: Any
    a_ids: list[int]  # A's notifications: seqs 1-3, the first read, acked up to 2
    private: str  # a private topic only A is subscribed to


def snapshot(user_id: int) -> tuple[Any, ...]:
    stream = UserStream.objects.filter(user_id=user_id).values().get()
    rows = list(Notification.objects.filter(recipient_id=user_id).order_by("seq").values())
    subscriptions = list(Subscription.objects.filter(user_id=user_id).order_by("id").values())
    return stream, rows, subscriptions


@pytest.fixture
def world(make_user: Any) -> Iterator[World]:
    a, b = make_user(), make_user()
    topic = Topic.objects.create(slug="a-private", title="A's", public=False)
    services.subscribe(user_id=a.id, slug=topic.slug, allow_private=True)
    a_ids = [services.notify(recipient_ids=[a.id], content=services.Content(title=f"A{i}")).deliveries[0].id for i in range(3)]
    services.mark_read(user_id=a.id, ids=a_ids[:1])
    services.ack_many({a.id: 2})
    services.notify(recipient_ids=[b.id], content=services.Content(title="B's own"))  # B has a seq 1 too
    before = snapshot(a.id)
    yield World(a, b, a_ids, topic.slug)
    assert snapshot(a.id) == before, "B changed A's state"


# --- WebSocket: every client frame ----------------------------------------------------------------


# Per client frame: what B sends naming A's things (theirs) or nobody's. Each gets a ref, so its answer ends with the reply.
BY_IDS = ("read", "unread", "archive", "unarchive", "delete")


def their_ids(w: World, theirs: bool) -> list[int]:
    return w.a_ids if theirs else [NOBODYS, NOBODYS + 1, NOBODYS + 2]


def by_ids(op: str) -> Callable[[World, bool], dict[str, Any]]:
    return lambda w, theirs: {"type": op, "ids": their_ids(w, theirs)}


UNTIL = (datetime.now(UTC) + timedelta(days=30)).isoformat()

FRAMES: dict[str, Callable[[World, bool], dict[str, Any]]] = {
    **{op: by_ids(op) for op in BY_IDS},
    "snooze": lambda w, theirs: {"type": "snooze", "ids": their_ids(w, theirs), "until": UNTIL},
    "action": lambda w, theirs: {"type": "action", "seq": 3 if theirs else NOBODYS, "action": "approve"},  # B has no seq 3
    "seen": lambda w, theirs: {"type": "seen", "up_to_seq": 0},  # B's own mark: nothing of A's to name
    "ack": lambda w, theirs: {"type": "ack", "seq": 3 if theirs else NOBODYS},  # seq 3 exists for A, not for B
    "resume": lambda w, theirs: {"type": "resume", "since": 2 if theirs else NOBODYS},
    "subscribe": lambda w, theirs: {"type": "subscribe", "topic": w.private if theirs else NOBODYS_TOPIC},
    "unsubscribe": lambda w, theirs: {"type": "unsubscribe", "topic": w.private if theirs else NOBODYS_TOPIC},
}


async def exchange(ws: Any, frame: dict[str, Any]) -> list[dict[str, Any]]:
    """Every frame B gets for this one, up to and including its reply."""
    await ws.send_json_to({**frame, "ref": "probe"})
    got = [await ws.receive_json_from(timeout=TIMEOUT)]
    while got[-1].get("ref") != "probe":
        got.append(await ws.receive_json_from(timeout=TIMEOUT))
    return got


@pytest.mark.parametrize("kind", FRAMES)
async def test_b_over_websocket_gets_for_as_things_what_it_gets_for_nobodys(world: World, kind: str) -> None:
    b_socket, _ = await welcome(world.b)
    a_socket, _ = await welcome(world.a)  # A is online: nothing B does may reach A's sockets either
    for_as = await exchange(b_socket, FRAMES[kind](world, True))
    for_nobodys = await exchange(b_socket, FRAMES[kind](world, False))
    assert unechoed(for_as, world.private) == unechoed(for_nobodys, NOBODYS_TOPIC)
    assert "A0" not in str(for_as)
    await a_socket.send_json_to({"type": "ping", "ref": "a"})
    assert await a_socket.receive_json_from(timeout=TIMEOUT) == {"type": "pong", "ref": "a"}
    await b_socket.disconnect()
    await a_socket.disconnect()


# --- HTTP: every endpoint of the me router, with B's token and with B's session --------------------


def answer(response: Any) -> tuple[int, Any]:
    return response.status_code, response.json()


def probes(w: World, theirs: bool) -> dict[tuple[str, str], Callable[[Api], Any]]:
    """Per route, what B gets when it names A's things (theirs) or nobody's."""
    ids = w.a_ids if theirs else [NOBODYS, NOBODYS + 1, NOBODYS + 2]
    topic = w.private if theirs else NOBODYS_TOPIC
    return {
        ("GET", "/me/notifications"): lambda api: [
            answer(api.get("/me/notifications", since=2 if theirs else NOBODYS)),
            answer(api.get("/me/notifications", before=4 if theirs else NOBODYS)),
            answer(api.get("/me/notifications", topic=topic)),
        ],
        **{("POST", f"/me/notifications/{op}"): posting(f"/me/notifications/{op}", {"ids": ids}) for op in BY_IDS},
        ("POST", "/me/notifications/snooze"): lambda api: answer(api.post("/me/notifications/snooze", {"ids": ids, "until": UNTIL})),
        ("POST", "/me/notifications/action"): posting("/me/notifications/action", {"seq": 3 if theirs else NOBODYS, "action": "approve"}),
        ("POST", "/me/notifications/seen"): lambda api: answer(api.post("/me/notifications/seen", {"up_to_seq": 0})),
        ("GET", "/me/unread-count"): lambda api: answer(api.get("/me/unread-count")),
        ("GET", "/topics"): lambda api: answer(api.get("/topics")),
        ("GET", "/me/subscriptions"): lambda api: answer(api.get("/me/subscriptions")),
        ("POST", "/me/subscriptions"): lambda api: answer(api.post("/me/subscriptions", {"topic": topic})),
        ("DELETE", "/me/subscriptions/{topic}"): lambda api: answer(api.delete(f"/me/subscriptions/{topic}")),
        ("POST", "/ws-ticket"): lambda api: ticket_holder(api.post("/ws-ticket")),
    }


def posting(path: str, body: dict[str, Any]) -> Callable[[Api], Any]:
    return lambda api: answer(api.post(path, body))


def ticket_holder(response: Any) -> tuple[int, int]:
    """A ticket differs every time; whose it is does not."""
    redeemed = auth.redeem_ticket(response.json()["ticket"])
    assert redeemed is not None
    return response.status_code, int(redeemed.user.pk)


NO_WORLD = World(None, None, [], "")  # enough to list the routes

# A private topic, and a seq B does not have, are not found for B, as ones that do not exist; every other route answers B about B.
STATUS = {
    ("POST", "/me/notifications/action"): 404,
    ("POST", "/me/subscriptions"): 404,
    ("DELETE", "/me/subscriptions/{topic}"): 404,
    ("POST", "/ws-ticket"): 201,
}


def me_routes() -> set[tuple[str, str]]:
    return {
        (method, path)
        for router in (me.router, inbox_state.router)
        for path, view in router.path_operations.items()
        for op in view.operations
        for method in op.methods
    }


def test_the_matrix_covers_every_endpoint_of_the_me_router() -> None:
    assert set(probes(NO_WORLD, True)) == me_routes()


def test_the_matrix_covers_every_client_frame() -> None:
    assert set(FRAMES) | {"ping"} == {"resume", "ack", "subscribe", "unsubscribe", "ping", changes.ACTION, *changes.OPS}


def as_b(world: World, how: str) -> Api:
    if how == "token":
        return Api(auth.issue_token(user=world.b, scopes=["read"]).secret)
    browser = Client()
    browser.force_login(world.b)
    return Api(client=browser)


@pytest.mark.parametrize("how", ["token", "session"])
@pytest.mark.parametrize("route", sorted(probes(NO_WORLD, True)), ids=" ".join)
def test_b_over_http_gets_for_as_things_what_it_gets_for_nobodys(world: World, how: str, route: tuple[str, str]) -> None:
    api = as_b(world, how)
    for_as, for_nobodys = probes(world, True)[route](api), probes(world, False)[route](api)
    assert unechoed(for_as, world.private) == unechoed(for_nobodys, NOBODYS_TOPIC)
    assert "A0" not in str(for_as)
    statuses = [status for status, _ in (for_as if isinstance(for_as, list) else [for_as])]
    assert set(statuses) == {STATUS.get(route, 200)}
    if route == ("POST", "/ws-ticket"):
        assert for_as == (201, world.b.pk)


@pytest.mark.parametrize("how", ["token", "session"])
def test_b_cannot_publish_to_a_without_the_publish_scope(world: World, how: str) -> None:
    api = as_b(world, how)  # a read token, or a session that is not staff
    one = api.post("/notifications", {"users": [world.a.id], "title": "from B"})
    batch = api.post("/notifications/batch", {"notifications": [{"topic": world.private, "title": "from B"}]})
    assert (one.status_code, batch.status_code) == (403, 403)
    assert one.json()["code"] == batch.json()["code"]  # the same refusal, whoever the recipient
