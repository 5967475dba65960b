"""The Server-Sent Events transport on a real daphne process: the socket's frames, replay and rules over plain HTTP."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from notifications import services
from notifications.models import UserStream
from tests.conftest import DaphneServer

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

TIMEOUT = 15.0


class Stream:
    """An SSE client that keeps each event's id, name and frame, as EventSource would parse them."""

    def __init__(self, server: DaphneServer, token: str, *, query: str = "", last_event_id: int | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", f"/api/v1/me/stream{query}", headers=headers)
        self.response = self.conn.getresponse()
        self.last_id: int | None = None
        self.retry: int | None = None

    def event(self) -> tuple[str, dict[str, Any]] | None:
        """The next event: (name, frame); None when the server ended the stream."""
        name, data = "message", ""
        while True:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text == "":
                if data:
                    return name, json.loads(data)
                continue
            field, _, value = text.partition(": ")
            if field == "id":
                self.last_id = int(value)
            elif field == "data":
                data = value
            elif field == "event":
                name = value
            elif field == "retry":
                self.retry = int(value)

    def frame(self) -> dict[str, Any]:
        event = self.event()
        assert event is not None and event[0] == "message", event
        return event[1]

    def until(self, kind: str) -> list[dict[str, Any]]:
        frames = [self.frame()]
        while frames[-1]["type"] != kind:
            frames.append(self.frame())
        return frames

    def close(self) -> None:
        self.conn.close()


def post_frame(
    server: DaphneServer, token: str | None, frame: dict[str, Any] | str, stream_id: str | None = None, **extra_headers: str
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    headers = {"Content-Type": "application/json", **extra_headers}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if stream_id is not None:
        headers["Notify-Stream"] = stream_id
    conn.request("POST", "/api/v1/me/frames", body=frame if isinstance(frame, str) else json.dumps(frame), headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, json.loads(body) if body else None


def notify(user: Any, title: str) -> int:
    return services.notify(recipient_ids=[user.id], content=services.Content(title=title)).deliveries[0].seq


def notifications(frames: list[dict[str, Any]]) -> list[int]:
    seqs: list[int] = []
    for frame in frames:
        inner = frame["frames"] if frame["type"] == "batch" else [frame]
        seqs += [f["seq"] for f in inner if f["type"] == "notification"]
    return seqs


def test_the_stream_carries_the_sockets_frames_and_takes_client_frames_by_post(daphne: DaphneServer, user: Any, token_for: Any) -> None:
    token = token_for(user, ("read",))
    stream = Stream(daphne, token)
    assert stream.response.status == 200
    assert stream.response.getheader("Content-Type") == "text/event-stream"
    welcome = stream.frame()
    assert welcome["type"] == "welcome" and welcome["head_seq"] == 0 and welcome["stream"]
    assert stream.retry is not None  # the browser's own reconnect delay

    seq = notify(user, "hello")
    pushed = stream.frame()
    assert (pushed["type"], pushed["seq"], pushed["title"]) == ("notification", seq, "hello")
    assert stream.last_id == seq  # the event's id is the seq it carries

    # Client frames go as POSTs, with the socket's answers.
    assert post_frame(daphne, token, {"type": "ping", "ref": 1}) == (200, {"type": "pong", "ref": 1})
    acked = post_frame(daphne, token, {"type": "ack", "seq": seq, "ref": "a"}, welcome["stream"])
    assert acked == (200, {"type": "reply", "ref": "a", "ok": True})
    status, reply = post_frame(daphne, token, {"type": "read", "ids": [pushed["id"]], "ref": "r"}, welcome["stream"])
    assert (status, reply["ok"], reply["unread"]) == (200, True, 0)
    read = stream.frame()  # every device hears of it, this stream too: a state event at its seq
    assert (read["type"], read["op"], read["ids"], read["seq"]) == ("state", "read", [pushed["id"]], seq + 1)
    assert stream.last_id == seq + 1
    assert post_frame(daphne, token, {"type": "read", "ids": [1]}) == (204, None)
    status, changed = post_frame(daphne, token, {"type": "archive", "filter": {}, "id": "e-1"})  # an id: always answered
    assert (status, changed["id"], changed["ref"], changed["op"]) == (200, "e-1", None, "archive")
    again = post_frame(daphne, token, {"type": "archive", "filter": {}, "id": "e-1"})
    assert again[1]["repeated"] is True and again[1]["seq"] == changed["seq"]
    status, error = post_frame(daphne, token, {"type": "nope", "ref": 3})
    assert (status, error["type"], error["code"], error["ref"]) == (400, "error", "unknown_type", 3)
    status, refused = post_frame(daphne, token, {"type": "resume", "since": 0, "ref": 4})
    assert (status, refused["ok"], refused["error"]) == (400, False, "no_stream")

    assert UserStream.objects.get(user_id=user.id).delivered_seq == seq
    stream.close()


def test_last_event_id_resumes_with_nothing_lost_or_repeated(daphne: DaphneServer, user: Any, token_for: Any) -> None:
    token = token_for(user, ("read",))
    seqs = [notify(user, f"n{i}") for i in range(5)]
    stream = Stream(daphne, token, last_event_id=seqs[1], query="?since=0")  # the browser's header wins over the URL's cursor
    frames = stream.until("synced")
    assert frames[0]["type"] == "welcome"
    assert notifications(frames) == seqs[2:]
    assert stream.last_id == seqs[-1]
    stream.close()

    batched = Stream(daphne, token, query="?since=0&batch=1")
    frames = batched.until("synced")
    assert notifications(frames) == seqs and batched.last_id == seqs[-1]
    batched.close()


def test_the_stream_needs_a_credential(daphne: DaphneServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", daphne.port, timeout=TIMEOUT)
    conn.request("GET", "/api/v1/me/stream")
    response = conn.getresponse()
    assert response.status == 401
    assert json.loads(response.read())["code"] == "unauthenticated"


def test_a_stream_that_does_not_keep_up_is_cut_off_as_a_slow_socket_is(daphne_factory: Any, user: Any, token_for: Any) -> None:
    server = daphne_factory(NOTIFY_SEND_BUFFER_FRAMES="20")
    token = token_for(user, ("read",))
    stream = Stream(server, token)
    assert stream.frame()["type"] == "welcome"
    for i in range(100):
        notify(user, f"n{i}")  # read by nobody, acked by nobody
    received: list[dict[str, Any]] = []
    while (event := stream.event()) is not None and event[0] == "message":
        received.append(event[1])
    # Past its window of unacked frames the stream is told why (4408) and ended: what it holds stays bounded.
    assert event == ("close", {"code": 4408})
    assert stream.event() is None
    assert 20 < len(notifications(received)) < 100  # the window, and what one round of the hub sent past it
    stream.close()


def test_a_streams_own_frames_need_only_its_id_and_spend_its_frame_budget(daphne_factory: Any, user: Any, token_for: Any) -> None:
    # An ack, resume or ping naming a stream its process serves is answered from the stream
    # itself (api/stream.event_stream_application): the id, which only its welcome carried, is the credential.
    server = daphne_factory(
        NOTIFY_CLIENT_FRAME_BURST="4", NOTIFY_CLIENT_FRAMES_PER_SECOND="1", NOTIFY_ALLOWED_ORIGINS="https://app.example"
    )
    token = token_for(user, ("read",))
    stream = Stream(server, token)
    stream_id = stream.frame()["stream"]
    seqs = [notify(user, f"n{i}") for i in range(3)]
    assert notifications([stream.frame() for _ in seqs]) == seqs

    acked = post_frame(server, None, {"type": "ack", "seq": seqs[-1], "ref": "a"}, stream_id, Origin="https://app.example")
    assert acked == (200, {"type": "reply", "ref": "a", "ok": True})
    assert UserStream.objects.get(user_id=user.id).delivered_seq == seqs[-1]
    assert post_frame(server, None, {"type": "resume", "since": seqs[0]}, stream_id) == (204, None)
    assert notifications(stream.until("synced")) == seqs[1:]  # replayed on that stream

    # Everything else is an API request as before: no credential, no answer, whatever stream it names.
    status, refused = post_frame(server, None, {"type": "read", "all": True}, stream_id)
    assert (status, refused["code"]) == (401, "unauthenticated")
    assert post_frame(server, None, {"type": "ack", "seq": 1}, "not-a-stream")[0] == 401
    status, error = post_frame(server, token, "{not json", stream_id)  # not parsed here: the view reads the same body
    assert (status, error["code"]) == (400, "bad_json")

    # Four frames a burst, one a second after: eight in a row run past it.
    statuses = [post_frame(server, None, {"type": "ping", "ref": i}, stream_id)[0] for i in range(8)]
    assert statuses[0] == 200 and statuses[-1] == 429
    stream.close()


def test_a_streams_own_frames_carry_cors_only_for_allowed_origins(daphne_factory: Any, user: Any, token_for: Any) -> None:
    server = daphne_factory(NOTIFY_ALLOWED_ORIGINS="https://app.example")
    stream = Stream(server, token_for(user, ("read",)))
    stream_id = stream.frame()["stream"]
    for origin, allowed in (("https://app.example", "https://app.example"), ("https://evil.example", None)):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
        conn.request("POST", "/api/v1/me/frames", body='{"type":"ping","ref":1}', headers={"Notify-Stream": stream_id, "Origin": origin})
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"type": "pong", "ref": 1})
        assert response.getheader("Access-Control-Allow-Origin") == allowed
        conn.close()
    stream.close()
