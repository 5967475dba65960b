"""The Python client and `manage.py listen` against real daphne processes, PostgreSQL and Redis.

Also the client's protocol handling against a scripted WebSocket server, to
drive the frames a healthy server rarely sends (expired holes, heartbeats ahead, reset).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.utils import timezone
from websockets.asyncio.server import ServerConnection, serve

from notifications import services
from notifications.client import ApiError, Client, Listener, ListenerClosed, Notification
from notifications.models import Notification as Row
from notifications.models import UserStream
from tests.conftest import ROOT, DaphneServer, database_url

pytestmark = [
    pytest.mark.server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fast_passwords", "close_thread_connections"),
]

TIMEOUT = 20.0


@pytest.fixture
def alice(make_user: Any) -> Any:
    return make_user("alice")


@pytest.fixture
def publisher_token(make_user: Any, token_for: Any) -> str:
    return str(token_for(make_user("publisher-svc"), ("publish",)))


async def until(predicate: Callable[[], Any]) -> None:
    """Wait for a condition the test cannot be told about (a row written by the server), with a deadline."""
    deadline = time.monotonic() + TIMEOUT
    while not await sync_to_async(predicate)():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def take(listener: Listener, n: int) -> list[Notification]:
    got = []
    async with asyncio.timeout(TIMEOUT):
        async for item in listener:
            got.append(item)
            if len(got) == n:
                break
    return got


# --- through a real daphne ----------------------------------------------------------


async def test_http_publish_reaches_a_live_socket_through_redis(
    daphne: DaphneServer, alice: Any, token_for: Any, publisher_token: str
) -> None:
    read_token = await sync_to_async(token_for)(alice, ("read",))
    async with websockets.connect(daphne.ws_url, additional_headers={"Authorization": f"Bearer {read_token}"}) as ws:
        async with asyncio.timeout(TIMEOUT):
            welcome = json.loads(await ws.recv())
            assert welcome["type"] == "welcome" and welcome["head_seq"] == 0
            publisher = Client(daphne.url, publisher_token)
            result = await asyncio.to_thread(publisher.publish, users=["alice"], title="Deploy done", body="v2", url="/deploys/2")
            assert result.created and [(d.seq, d.recipient) for d in result.notifications] == [(1, alice.id)]
            frame = json.loads(await ws.recv())
            while frame["type"] != "notification":
                frame = json.loads(await ws.recv())
    assert (frame["seq"], frame["id"], frame["title"], frame["body"], frame["url"]) == (
        1,
        result.notifications[0].id,
        "Deploy done",
        "v2",
        "/deploys/2",
    )


async def test_client_publishes_and_listens_with_acks(daphne: DaphneServer, alice: Any, token_for: Any, publisher_token: str) -> None:
    reader = Client(daphne.url, await sync_to_async(token_for)(alice, ("read",)))
    publisher = Client(daphne.url, publisher_token)
    async with reader.listen(ack_interval=0.05) as stream:
        async with asyncio.timeout(TIMEOUT):
            await stream.wait_live()
        for i in range(3):
            await asyncio.to_thread(publisher.publish, users=[alice.id], title=f"n{i}", idempotency_key=f"k{i}")
        again = await asyncio.to_thread(publisher.publish, users=[alice.id], title="n0", idempotency_key="k0")
        assert again.created is False
        got = await take(stream, 3)
        assert [(n.seq, n.title) for n in got] == [(1, "n0"), (2, "n1"), (3, "n2")]
        await until(lambda: UserStream.objects.get(user=alice).delivered_seq == 3)
        assert stream.consumed == 3 and stream.cursor == 3
    page = await asyncio.to_thread(reader.inbox, limit=2)
    assert [n.seq for n in page.items] == [3, 2] and page.next_before == 2
    assert await asyncio.to_thread(reader.unread_count) == 3
    await asyncio.to_thread(reader.mark_read, everything=True)
    assert await asyncio.to_thread(reader.unread_count) == 0
    assert len(await asyncio.to_thread(reader.ws_ticket)) >= 32


async def test_client_http_errors_are_api_errors(daphne: DaphneServer, alice: Any, token_for: Any) -> None:
    reader = Client(daphne.url, await sync_to_async(token_for)(alice, ("read",)))
    with pytest.raises(ApiError) as e:
        await asyncio.to_thread(reader.publish, users=[alice.id], title="x")
    assert (e.value.status, e.value.code) == (403, "insufficient_scope")
    with pytest.raises(ApiError) as e:
        await asyncio.to_thread(Client(daphne.url, "ntf_wrong").unread_count)
    assert (e.value.status, e.value.code) == (401, "unauthenticated")


async def test_health_metrics_and_offline_docs_on_a_real_server(daphne: DaphneServer, alice: Any, token_for: Any) -> None:
    def get(path: str) -> tuple[int, str, str]:
        with urllib.request.urlopen(daphne.url + path, timeout=TIMEOUT) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()

    assert (await asyncio.to_thread(get, "/healthz"))[0] == 200
    status, _, body = await asyncio.to_thread(get, "/readyz")
    assert status == 200 and json.loads(body)["checks"]["database"] == "ok"
    status, _, page = await asyncio.to_thread(get, "/api/v1/docs")
    assert status == 200 and "/static/ninja/swagger-ui-bundle.js" in page
    status, content_type, _ = await asyncio.to_thread(get, "/static/ninja/swagger-ui-bundle.js")
    assert status == 200 and "javascript" in content_type
    async with Client(daphne.url, await sync_to_async(token_for)(alice, ("read",))).listen() as stream:
        async with asyncio.timeout(TIMEOUT):
            await stream.wait_live()
            # Each server process reports its connections every few seconds: wait for this one to count ours.
            await until(lambda: socket_count(get("/metrics")[2]) >= 1)
    text = (await asyncio.to_thread(get, "/metrics"))[2]
    assert "# TYPE notify_connections gauge" in text and "\nnotify_nodes " in text


def socket_count(metrics: str) -> int:
    return sum(int(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("notify_connections{"))


async def test_listener_replays_in_pages_from_since(daphne_factory: Any, alice: Any, token_for: Any) -> None:
    server = daphne_factory(NOTIFY_REPLAY_PAGE_SIZE="4")
    for i in range(10):
        await sync_to_async(services.notify)(recipient_ids=[alice.id], content=services.Content(title=f"n{i}"))
    client = Client(server.url, await sync_to_async(token_for)(alice, ("read",)))
    async with client.listen(since=3) as stream:
        got = await take(stream, 7)
    assert [n.seq for n in got] == list(range(4, 11))


async def test_listener_recovers_from_reset_over_http(daphne: DaphneServer, alice: Any, token_for: Any) -> None:
    def notify(title: str) -> None:
        services.notify(recipient_ids=[alice.id], content=services.Content(title=title))

    def age_out_first_three() -> None:
        Row.objects.filter(recipient=alice, seq__lte=3).update(created_at=timezone.now() - timedelta(days=400))
        services.prune()

    for i in range(6):
        await sync_to_async(notify)(f"n{i + 1}")
    await sync_to_async(age_out_first_three)()
    events: list[dict[str, Any]] = []
    client = Client(daphne.url, await sync_to_async(token_for)(alice, ("read",)))
    async with client.listen(since=1, on_event=events.append) as stream:
        got = await take(stream, 3)  # the cursor is older than retention: what is still stored comes over HTTP
        assert [n.seq for n in got] == [4, 5, 6]
        await sync_to_async(notify)("after the reset")
        assert [(n.seq, n.title) for n in await take(stream, 1)] == [(7, "after the reset")]
    assert [e["reason"] for e in events if e["type"] == "reset"] == ["retention"]


async def test_listener_reconnects_and_resumes_from_its_cursor(
    daphne: DaphneServer, alice: Any, token_for: Any, publisher_token: str
) -> None:
    states: list[str] = []
    client = Client(daphne.url, await sync_to_async(token_for)(alice, ("read",)))
    publisher = Client(daphne.url, publisher_token)
    on_event = lambda f: states.append(f["state"]) if f["type"] == "state" else None  # noqa: E731
    async with client.listen(backoff_base=0.05, backoff_max=0.5, on_event=on_event) as stream:
        async with asyncio.timeout(TIMEOUT):
            await stream.wait_live()
        await asyncio.to_thread(publisher.publish, users=[alice.id], title="before")
        assert [n.title for n in await take(stream, 1)] == ["before"]
        await asyncio.to_thread(daphne.stop)
        for i in range(3):  # published while the server is down: stored, pushed to nobody
            await sync_to_async(services.notify)(recipient_ids=[alice.id], content=services.Content(title=f"missed{i}"))
        await asyncio.to_thread(daphne.start)
        got = await take(stream, 3)
        assert [(n.seq, n.title) for n in got] == [(2, "missed0"), (3, "missed1"), (4, "missed2")]
        await asyncio.to_thread(publisher.publish, users=[alice.id], title="after")
        assert [(n.seq, n.title) for n in await take(stream, 1)] == [(5, "after")]
    assert stream.connections >= 2 and "offline" in states


async def test_a_push_lost_on_the_way_arrives_by_heartbeat(daphne: DaphneServer, alice: Any, token_for: Any, settings: Any) -> None:
    client = Client(daphne.url, await sync_to_async(token_for)(alice, ("read",)))
    async with client.listen() as stream:
        async with asyncio.timeout(TIMEOUT):
            await stream.wait_live()
        # Publish from this process onto a channel-layer prefix no server listens on: the push is lost, the row is not.
        layer = settings.CHANNEL_LAYERS["default"]
        if not layer["BACKEND"].startswith("channels_redis"):
            pytest.skip("needs the Redis channel layer")
        settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "prefix": "nobody-listens"}}}
        channel_layers.backends.clear()
        await sync_to_async(services.notify)(recipient_ids=[alice.id], content=services.Content(title="lost push"))
        got = await take(stream, 1)  # the fixture's daphne beats every 2 s
    assert [(n.seq, n.title) for n in got] == [(1, "lost push")]


async def test_listener_with_a_bad_token_stops_with_listener_closed(daphne: DaphneServer) -> None:
    async with Client(daphne.url, "ntf_not_a_token").listen() as stream:
        with pytest.raises(ListenerClosed) as e:
            await take(stream, 1)
    assert e.value.code == 4401


async def test_manage_py_listen_prints_notifications_live(daphne: DaphneServer, alice: Any, publisher_token: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url(), "CHANNEL_PREFIX": daphne.prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "listen", "alice", "--url", daphne.url, "--count", "2", "--json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(TIMEOUT):
            line = await proc.stderr.readline()
            while not line.startswith(b"-- live as alice"):
                assert line, "listen exited before it was live"
                line = await proc.stderr.readline()
            publisher = Client(daphne.url, publisher_token)
            await asyncio.to_thread(publisher.publish, users=["alice"], title="first", body="hello")
            await asyncio.to_thread(publisher.publish, users=["alice"], title="second", level="warning")
            out = await proc.stdout.read()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    printed = [json.loads(line) for line in out.decode().splitlines()]
    assert [(p["seq"], p["title"], p["level"]) for p in printed] == [(1, "first", "info"), (2, "second", "warning")]


async def test_manage_py_listen_unknown_user_fails(alice: Any) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "manage.py", "listen", "nobody", cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url()},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(TIMEOUT):
        _, err = await proc.communicate()
    assert proc.returncode != 0 and b"no active user 'nobody'" in err


# --- against a scripted server: the frames a healthy server rarely sends --------------


class Script:
    """A WebSocket server that plays one scripted conversation per connection and records what the client sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.urls: list[str] = []
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.handlers: list[Callable[[ServerConnection, Script], Any]] = []

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.urls.append(ws.request.path)
        handler = self.handlers.pop(0)
        reader = asyncio.create_task(self._read(ws))
        try:
            await handler(ws, self)
        finally:
            reader.cancel()

    async def _read(self, ws: ServerConnection) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            self.received.append(frame)
            await self.inbox.put(frame)

    async def expect(self, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while True:
                frame = await self.inbox.get()
                if frame["type"] == kind:
                    return frame


def note(seq: int) -> str:
    return json.dumps({"type": "notification", "seq": seq, "id": 100 + seq, "title": f"n{seq}", "topic": None, "data": {}})


def welcome(head: int) -> str:
    return json.dumps({"type": "welcome", "protocol": 1, "user": 1, "head_seq": head, "unread": head, "heartbeat_s": 25})


@pytest.fixture
async def script() -> AsyncIterator[tuple[Script, str]]:
    s = Script()
    async with serve(s.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield s, f"ws://127.0.0.1:{port}/ws/notifications/"


@pytest.mark.django_db(transaction=False)
async def test_client_dedups_pages_follows_heartbeats_and_acks_cumulatively(script: tuple[Script, str]) -> None:
    s, url = script

    async def conversation(ws: ServerConnection, s: Script) -> None:
        await ws.send(welcome(2))
        await ws.send(note(3))  # since=2 was in the URL: the replay follows the welcome
        await ws.send(json.dumps({"type": "synced", "head_seq": 3, "replayed": 1, "more": True}))
        assert (await s.expect("resume"))["since"] == 3  # more: ask again from the last seq
        await ws.send(note(4))
        await ws.send(json.dumps({"type": "synced", "head_seq": 4, "replayed": 1, "more": False}))
        await ws.send(note(4))  # duplicate: dropped
        await ws.send(note(6))  # a gap: held, and the client asks for what comes after 4
        assert (await s.expect("resume"))["since"] == 4
        await ws.send(note(6))  # 5 had expired: the replay skips it, and repeats the held 6
        await ws.send(json.dumps({"type": "synced", "head_seq": 6, "replayed": 1, "more": False}))
        await ws.send(json.dumps({"type": "heartbeat", "head_seq": 8, "unread": 3}))  # behind: resume
        assert (await s.expect("resume"))["since"] == 6
        await ws.send(note(6))  # the replay overlaps what it has: dropped
        await ws.send(note(8))  # 7 had expired too: held until synced passes it
        await ws.send(json.dumps({"type": "synced", "head_seq": 8, "replayed": 2, "more": False}))
        await ws.wait_closed()

    s.handlers.append(conversation)
    listener = Listener(url, token="ntf_x", since=2, ack_interval=0.05)
    async with listener:
        got = await take(listener, 4)
        acks: list[int] = []
        async with asyncio.timeout(TIMEOUT):
            while not acks or acks[-1] < 8:
                acks.append((await s.expect("ack"))["seq"])
    assert [n.seq for n in got] == [3, 4, 6, 8]
    assert acks == sorted(acks) and len(acks) < 4  # cumulative and batched, not one per notification
    assert listener.unread == 3
    assert s.urls[0] == "/ws/notifications/?batch=1&since=2"


@pytest.mark.django_db(transaction=False)
async def test_client_takes_reset_and_reconnects_from_its_cursor(script: tuple[Script, str]) -> None:
    s, url = script

    async def first(ws: ServerConnection, s: Script) -> None:
        await ws.send(welcome(10))
        await ws.send(json.dumps({"type": "reset", "reason": "retention", "head_seq": 10}))
        assert (await s.expect("resume"))["since"] == 10  # tells the server where this socket stands
        await ws.send(json.dumps({"type": "synced", "head_seq": 10, "replayed": 0, "more": False}))
        await ws.send(note(11))
        await s.expect("ack")
        await ws.close(1012, "server restarting")

    async def second(ws: ServerConnection, s: Script) -> None:
        await ws.send(welcome(12))
        await ws.send(note(12))
        await ws.send(json.dumps({"type": "synced", "head_seq": 12, "replayed": 1, "more": False}))
        await ws.wait_closed()

    s.handlers += [first, second]
    events: list[str] = []
    listener = Listener(url, token="ntf_x", since=3, ack_interval=0.01, backoff_base=0.01, on_event=lambda f: events.append(f["type"]))
    async with listener:
        got = await take(listener, 2)
    assert [n.seq for n in got] == [11, 12]
    assert s.urls == ["/ws/notifications/?batch=1&since=3", "/ws/notifications/?batch=1&since=11"]
    assert "reset" in events and listener.connections == 2


def test_reconnect_delay_is_full_jitter_from_the_first_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from notifications.client import listener as module

    bounds: list[tuple[float, float]] = []

    def highest(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    monkeypatch.setattr(module.random, "uniform", highest)
    ceilings = [module.reconnect_delay(n, base=1.0, cap=30.0) for n in range(1, 8)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert {low for low, _ in bounds} == {0}
    monkeypatch.undo()
    # Spread over [0, base], with no pile anywhere: a storm of first retries comes back evenly.
    firsts = sorted(module.reconnect_delay(1, base=1.0, cap=30.0) for _ in range(2000))
    assert 0 <= firsts[0] < 0.02 and 0.98 < firsts[-1] <= 1.0
    assert 0.2 < firsts[500] < 0.3 and 0.45 < firsts[1000] < 0.55 and 0.7 < firsts[1500] < 0.8


@pytest.mark.django_db(transaction=False)
async def test_the_first_retry_after_a_1012_is_jittered_over_the_base(script: tuple[Script, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from notifications.client import listener as module

    s, url = script
    retries: list[int] = []

    def at_once(retry: int, *, base: float, cap: float) -> float:
        retries.append(retry)
        return 0.0

    monkeypatch.setattr(module, "reconnect_delay", at_once)

    async def draining(ws: ServerConnection, s: Script) -> None:
        await ws.send(welcome(2))
        await ws.send(json.dumps({"type": "synced", "head_seq": 2, "replayed": 0, "more": False}))
        await ws.close(1012, "server restarting")

    async def back(ws: ServerConnection, s: Script) -> None:
        await ws.send(welcome(3))
        await ws.send(note(3))
        await ws.send(json.dumps({"type": "synced", "head_seq": 3, "replayed": 1, "more": False}))
        await ws.wait_closed()

    s.handlers += [draining, back]
    async with Listener(url, token="ntf_x", since=2) as listener:
        got = await take(listener, 1)
    assert [n.seq for n in got] == [3]
    assert retries == [1]  # the first retry: a random wait in [0, backoff_base]


@pytest.mark.django_db(transaction=False)
async def test_a_server_gone_before_answering_the_handshake_is_retried(script: tuple[Script, str]) -> None:
    s, url = script
    port = int(url.split(":")[2].split("/")[0])
    fronted: list[str] = []

    async def front(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The first connection is closed once its request is in, as by a server killed mid-handshake; the rest go through."""
        request = await reader.readuntil(b"\r\n\r\n")
        fronted.append("cut" if not fronted else "through")
        if fronted[-1] == "cut":
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
        upstream_writer.write(request)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer), return_exceptions=True)

    async def conversation(ws: ServerConnection, s: Script) -> None:
        await ws.send(welcome(1))
        await ws.send(note(1))
        await ws.send(json.dumps({"type": "synced", "head_seq": 1, "replayed": 1, "more": False}))
        await ws.wait_closed()

    s.handlers.append(conversation)
    server = await asyncio.start_server(front, "127.0.0.1", 0)
    front_port = server.sockets[0].getsockname()[1]
    async with server, Listener(f"ws://127.0.0.1:{front_port}/ws/notifications/", token="ntf_x", since=0, backoff_base=0.01) as listener:
        got = await take(listener, 1)
    assert [n.seq for n in got] == [1]
    assert fronted == ["cut", "through"] and listener.connections == 1


@pytest.mark.django_db(transaction=False)
async def test_a_frame_that_is_not_json_ends_the_iteration_with_its_error(script: tuple[Script, str]) -> None:
    s, url = script

    async def garbled(ws: ServerConnection, s: Script) -> None:
        await ws.send(welcome(0))
        await ws.send("<html>502 Bad Gateway</html>")
        await ws.wait_closed()

    s.handlers.append(garbled)
    async with Listener(url, token="ntf_x", since=0) as listener:
        with pytest.raises(json.JSONDecodeError):
            await take(listener, 1)
    assert listener.state == "closed"


@pytest.mark.django_db(transaction=False)
async def test_the_outbox_sends_one_change_at_a_time_in_order_again_after_a_refusal_and_a_reconnect(script: tuple[Script, str]) -> None:
    s, url = script

    async def first(ws: ServerConnection, s: Script) -> None:
        await ws.send(welcome(0))
        a = await s.expect("archive")
        await ws.send(json.dumps({"type": "reply", "ref": None, "id": a["id"], "ok": False, "error": "unavailable", "message": "later"}))
        again = await s.expect("archive")  # the same change again, before the one behind it
        assert again == a
        await ws.send(json.dumps({"type": "reply", "ref": None, "id": a["id"], "ok": True, "op": "archive", "seq": 1}))
        await s.expect("seen")
        await ws.close()  # dropped before its answer

    async def second(ws: ServerConnection, s: Script) -> None:
        await ws.send(welcome(1))
        seen = await s.expect("seen")  # sent again on the new socket, same id
        await ws.send(json.dumps({"type": "reply", "ref": None, "id": seen["id"], "ok": True, "op": "seen", "repeated": True}))
        bad = await s.expect("delete")
        await ws.send(json.dumps({"type": "reply", "ref": None, "id": bad["id"], "ok": False, "error": "invalid_field", "message": "no"}))
        await ws.wait_closed()

    s.handlers += [first, second]
    async with Listener(url, token="ntf_x", since=0, backoff_base=0.01, backoff_max=0.05) as listener:
        archived, seen, deleted = listener.archive([7]), listener.seen(3), listener.delete(filter={"kind": "build"})
        async with asyncio.timeout(TIMEOUT):
            answers = [await archived, await seen, await deleted]
    assert [(a["op"] if a["ok"] else a["error"]) for a in answers] == ["archive", "seen", "invalid_field"]  # a final refusal ends it too
    assert answers[1]["repeated"] and len(listener.outbox) == 0
    sent = [f for f in s.received if f["type"] in ("archive", "seen", "delete")]
    assert [f["type"] for f in sent] == ["archive", "archive", "seen", "seen", "delete"]
    assert len({f["id"] for f in sent}) == 3 and sent[-1]["filter"] == {"kind": "build"}
