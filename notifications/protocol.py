"""WebSocket protocol v1: client frames parsed against an allow-list, server frames built.

A client's `type` is only ever looked up in CLIENT_FRAMES; it never reaches
Channels' dispatch, so a client cannot call a consumer method by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from . import changes
from .changes import Change, Filter
from .rules import MAX_SEQ, SLUG_RE

PROTOCOL_VERSION = 1
MAX_READ_STATE_IDS = 1000
MAX_REF_LENGTH = 64
BATCH_MAX_FRAMES = 100  # notifications per `batch` frame: ~30 KB, well under any client's frame limit

Ref = str | int | None

# Close codes (docs/protocol.md). The stand-alone Python client keeps copies.
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_SLOW_CONSUMER = 4408
CLOSE_RATE_LIMITED = 4429
CLOSE_UNAVAILABLE = 4503  # the database is down: back off and retry (docs/decisions/0007)
CLOSE_TOO_BIG = 1009  # sent by the server (notifications/server.py) as a frame arrives
CLOSE_TOO_BIG_SEEN_BY_APP = 4009  # under another server, which let the frame through
CLOSE_SERVER_RESTARTING = 1012


class FrameError(Exception):
    """A client frame we cannot accept; becomes an `error` frame (a `reply` if it carried an event `id`), the socket stays up."""

    def __init__(self, code: str, message: str, ref: Ref = None, *, id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.id = id

    def frame(self) -> str:
        """A frame with an event id is always answered with a `reply`, so that its sender can let it go."""
        if self.id is not None:
            return reply(self.ref, ok=False, error=self.code, message=self.message, id=self.id)
        return error(self.code, self.message, self.ref)


@dataclass(frozen=True)
class Resume:
    since: int
    ref: Ref = None


@dataclass(frozen=True)
class Ack:
    seq: int
    ref: Ref = None


@dataclass(frozen=True)
class Command:
    """A state-changing frame (read, unread, seen, archive, unarchive, delete, snooze), with the client's event id."""

    change: Change
    id: str | None = None
    ref: Ref = None


@dataclass(frozen=True)
class Answer:
    """`action`: answer the notification at `seq` with one of its actions (changes.ACTION), with the client's event id."""

    seq: int
    action: str
    id: str | None = None
    ref: Ref = None


@dataclass(frozen=True)
class Subscribe:
    topic: str
    ref: Ref = None


@dataclass(frozen=True)
class Unsubscribe:
    topic: str
    ref: Ref = None


@dataclass(frozen=True)
class Ping:
    ref: Ref = None


ClientFrame = Resume | Ack | Command | Answer | Subscribe | Unsubscribe | Ping


def _seq(frame: dict[str, Any], field: str, ref: Ref) -> int:
    value = frame.get(field)
    # bool is an int in Python; `true` is not a seq.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
        raise FrameError("invalid_field", f"'{field}' must be a non-negative integer", ref)
    return value


def _topic(frame: dict[str, Any], ref: Ref) -> str:
    value = frame.get("topic")
    if not isinstance(value, str) or not SLUG_RE.match(value):
        raise FrameError("invalid_field", "'topic' must be a topic slug", ref)
    return value


class _Fields:
    """One command frame's fields, each refused with the frame's ref and event id."""

    def __init__(self, frame: dict[str, Any], ref: Ref, id: str | None) -> None:
        self.frame, self.ref, self.id = frame, ref, id

    def refuse(self, message: str) -> FrameError:
        return FrameError("invalid_field", message, self.ref, id=self.id)

    def ids(self) -> tuple[int, ...]:
        ids = self.frame.get("ids")
        if not isinstance(ids, list) or not ids:
            raise self.refuse("'ids' must be a non-empty list")
        if len(ids) > changes.MAX_IDS:
            raise self.refuse(f"at most {changes.MAX_IDS} ids per frame")
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_SEQ for i in ids):
            raise self.refuse("'ids' must be positive integers")
        return tuple(ids)

    def seq(self, value: Any, name: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
            raise self.refuse(f"'{name}' must be a non-negative integer")
        return value

    def filter(self) -> Filter:
        value = self.frame.get("filter")
        if not isinstance(value, dict):
            raise self.refuse("'filter' must be an object")
        unknown = sorted(set(value) - {"topic", "kind", "up_to_seq", "archived"})
        if unknown:
            raise self.refuse(f"'filter' takes topic, kind, up_to_seq and archived, not {unknown[0][:40]!r}")
        topic, kind, up_to, archived = (value.get(k) for k in ("topic", "kind", "up_to_seq", "archived"))
        if topic is not None and (not isinstance(topic, str) or not SLUG_RE.match(topic)):
            raise self.refuse("'filter.topic' must be a topic slug")
        if kind is not None and not changes.is_kind_prefix(kind):
            raise self.refuse("'filter.kind' must be a kind or the start of one")
        if archived is not None and not isinstance(archived, bool):
            raise self.refuse("'filter.archived' must be true or false")
        return Filter(topic, kind, None if up_to is None else self.seq(up_to, "filter.up_to_seq"), bool(archived))

    def until(self) -> datetime:
        value = self.frame.get("until")
        try:
            until = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 40 else None
        except ValueError:
            until = None
        if until is None:
            raise self.refuse("'until' must be an ISO 8601 date and time with a UTC offset")
        problem = changes.snooze_until_problem(until, datetime.now(until.tzinfo))
        if problem:
            raise self.refuse(problem)
        return until


def _event_id(frame: dict[str, Any], ref: Ref) -> str | None:
    id = frame.get("id")
    if id is not None and not changes.is_client_id(id):
        raise FrameError("invalid_field", "'id' must be 1-64 characters of letters, digits and . _ : -", ref)
    return id


def _answer(frame: dict[str, Any], ref: Ref) -> Answer:
    id = _event_id(frame, ref)
    fields = _Fields(frame, ref, id)
    action = frame.get("action")
    if not isinstance(action, str) or not SLUG_RE.match(action):
        raise fields.refuse("'action' must be an action's id (a slug)")
    return Answer(fields.seq(frame.get("seq"), "seq"), action, id, ref)


def _command(kind: str, frame: dict[str, Any], ref: Ref) -> Command:
    id = _event_id(frame, ref)
    fields = _Fields(frame, ref, id)
    given = [k for k in ("ids", "filter", "all") if k in frame]
    if kind == changes.SEEN:
        change = Change(kind, up_to_seq=fields.seq(frame.get("up_to_seq"), "up_to_seq"))
    elif kind == changes.SNOOZE:
        change = Change(kind, ids=fields.ids(), until=fields.until())
    elif kind == changes.UNREAD:
        change = Change(kind, ids=fields.ids())
    elif len(given) != 1 or (given == ["all"] and (kind != changes.READ or frame["all"] is not True)):
        alternatives = "'ids', 'filter' or 'all': true" if kind == changes.READ else "'ids' or 'filter'"
        raise fields.refuse(f"'{kind}' needs one of {alternatives}")
    elif given == ["ids"]:
        change = Change(kind, ids=fields.ids())
    else:
        change = Change(kind, filter=fields.filter() if given == ["filter"] else Filter())
    return Command(change, id, ref)


def _ref(frame: dict[str, Any]) -> Ref:
    ref = frame.get("ref")
    if ref is None:
        return None
    if isinstance(ref, bool) or not isinstance(ref, (str, int)) or len(str(ref)) > MAX_REF_LENGTH:
        raise FrameError("invalid_field", f"'ref' must be a string or integer of at most {MAX_REF_LENGTH} characters")
    return ref


def parse(text: str) -> ClientFrame:
    """Parse one client text frame or raise FrameError."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise FrameError("bad_json", "frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise FrameError("bad_frame", "frame must be a JSON object")
    ref = _ref(frame)
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise FrameError("bad_frame", "frame needs a string 'type'", ref)
    if kind == "resume":
        return Resume(since=_seq(frame, "since", ref), ref=ref)
    if kind == "ack":
        return Ack(seq=_seq(frame, "seq", ref), ref=ref)
    if kind in changes.OPS:
        return _command(kind, frame, ref)
    if kind == changes.ACTION:
        return _answer(frame, ref)
    if kind == "subscribe":
        return Subscribe(topic=_topic(frame, ref), ref=ref)
    if kind == "unsubscribe":
        return Unsubscribe(topic=_topic(frame, ref), ref=ref)
    if kind == "ping":
        return Ping(ref=ref)
    raise FrameError("unknown_type", f"unknown frame type {kind[:40]!r}", ref)


def encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def batch(frames: Sequence[str]) -> str:
    """Several encoded `notification` frames as one, in seq order (for sockets that asked with ?batch=1)."""
    return '{"type":"batch","frames":[' + ",".join(frames) + "]}"


def chunks(frames: Sequence[str]) -> Iterator[Sequence[str]]:
    """Notification frames in runs of up to BATCH_MAX_FRAMES, each sent as one frame (a `batch` when longer than one)."""
    for start in range(0, len(frames), BATCH_MAX_FRAMES):
        yield frames[start : start + BATCH_MAX_FRAMES]


def seq_of(notification: str) -> int:
    """The seq an encoded `notification` frame carries."""
    seq = orjson.loads(notification)["seq"]
    assert isinstance(seq, int)
    return seq


def welcome(*, user_id: int, head_seq: int, unread: int, unseen: int, heartbeat_s: int, stream: str | None = None) -> str:
    """`stream` names an event stream, for the frames its client POSTs (docs/protocol.md, "The event stream")."""
    frame: dict[str, Any] = {
        "type": "welcome",
        "protocol": PROTOCOL_VERSION,
        "user": user_id,
        "head_seq": head_seq,
        "unread": unread,
        "unseen": unseen,
        "heartbeat_s": heartbeat_s,
    }
    if stream is not None:
        frame["stream"] = stream
    return encode(frame)


def synced(*, head_seq: int, replayed: int, more: bool) -> str:
    return encode({"type": "synced", "head_seq": head_seq, "replayed": replayed, "more": more})


def reset(*, reason: str, head_seq: int) -> str:
    return encode({"type": "reset", "reason": reason, "head_seq": head_seq})


def heartbeat(*, head_seq: int, unread: int | None, unseen: int | None = None) -> str:
    frame: dict[str, Any] = {"type": "heartbeat", "head_seq": head_seq}
    if unread is not None:
        frame["unread"] = unread
    if unseen is not None:
        frame["unseen"] = unseen
    return encode(frame)


def read_state(*, up_to_seq: int, unread_ids: list[int], unread: int, head_seq: int, truncated: bool) -> str:
    """Of the notifications with seq <= up_to_seq, exactly unread_ids are unread (unless truncated)."""
    return encode(
        {
            "type": "read_state",
            "up_to_seq": up_to_seq,
            "unread_ids": unread_ids,
            "unread": unread,
            "head_seq": head_seq,
            "truncated": truncated,
        }
    )


def reply(ref: Ref, *, ok: bool = True, error: str | None = None, **extra: Any) -> str:
    frame: dict[str, Any] = {"type": "reply", "ref": ref, "ok": ok, **extra}
    if error is not None:
        frame["error"] = error
    return encode(frame)


def refusal(frame: ClientFrame, code: str, message: str) -> str:
    """A frame that could not be done: a `reply` to its ref or event id, else an `error`."""
    id = frame.id if isinstance(frame, (Command, Answer)) else None
    if frame.ref is None and id is None:
        return error(code, message)
    return reply(frame.ref, ok=False, error=code, message=message, **({"id": id} if id is not None else {}))


def error(code: str, message: str, ref: Ref = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    return encode(frame)


def pong(ref: Ref = None) -> str:
    return encode({"type": "pong", "ref": ref} if ref is not None else {"type": "pong"})


# Every unread (and unseen) count the server sends says which head_seq it covers: a client
# then adds its own unread notifications above that seq, and is exact even when
# a read mark and a publish cross on the wire.


def state_event(*, seq: int, op: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A change of inbox state at its seq (models.InboxEvent): op fields, then unread, unseen, head_seq."""
    return {"type": "state", "seq": seq, "op": op, **fields}
