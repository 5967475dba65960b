"""WebSocket protocol v1: client frames parsed against an allow-list, server frames built.

A client's `type` is only ever looked up in CLIENT_FRAMES; it never reaches
Channels' dispatch, so a client cannot call a consumer method by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .rules import MAX_READ_IDS, MAX_SEQ, SLUG_RE

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
    """A client frame we cannot accept; becomes an `error` frame, the socket stays up."""

    def __init__(self, code: str, message: str, ref: Ref = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


@dataclass(frozen=True)
class Resume:
    since: int
    ref: Ref = None


@dataclass(frozen=True)
class Ack:
    seq: int
    ref: Ref = None


@dataclass(frozen=True)
class Read:
    ids: tuple[int, ...]
    all: bool
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


ClientFrame = Resume | Ack | Read | Subscribe | Unsubscribe | Ping


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


def _read(frame: dict[str, Any], ref: Ref) -> Read:
    if frame.get("all") is True:
        return Read(ids=(), all=True, ref=ref)
    ids = frame.get("ids")
    if not isinstance(ids, list) or not ids:
        raise FrameError("invalid_field", "'read' needs a non-empty 'ids' list or 'all': true", ref)
    if len(ids) > MAX_READ_IDS:
        raise FrameError("invalid_field", f"at most {MAX_READ_IDS} ids per 'read'", ref)
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_SEQ for i in ids):
        raise FrameError("invalid_field", "'ids' must be positive integers", ref)
    return Read(ids=tuple(ids), all=False, ref=ref)


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
    if kind == "read":
        return _read(frame, ref)
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


def welcome(*, user_id: int, head_seq: int, unread: int, heartbeat_s: int, stream: str | None = None) -> str:
    """`stream` names an event stream, for the frames its client POSTs (docs/protocol.md, "The event stream")."""
    frame: dict[str, Any] = {
        "type": "welcome",
        "protocol": PROTOCOL_VERSION,
        "user": user_id,
        "head_seq": head_seq,
        "unread": unread,
        "heartbeat_s": heartbeat_s,
    }
    if stream is not None:
        frame["stream"] = stream
    return encode(frame)


def synced(*, head_seq: int, replayed: int, more: bool) -> str:
    return encode({"type": "synced", "head_seq": head_seq, "replayed": replayed, "more": more})


def reset(*, reason: str, head_seq: int) -> str:
    return encode({"type": "reset", "reason": reason, "head_seq": head_seq})


def heartbeat(*, head_seq: int, unread: int | None) -> str:
    frame: dict[str, Any] = {"type": "heartbeat", "head_seq": head_seq}
    if unread is not None:
        frame["unread"] = unread
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


def error(code: str, message: str, ref: Ref = None) -> str:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    return encode(frame)


def pong(ref: Ref = None) -> str:
    return encode({"type": "pong", "ref": ref} if ref is not None else {"type": "pong"})


# Every unread count the server sends says which head_seq it covers: a client
# then adds its own unread notifications above that seq, and is exact even when
# a read mark and a publish cross on the wire.


def read_event(*, ids: list[int] | None, up_to_seq: int | None, unread: int, head_seq: int) -> str:
    frame: dict[str, Any] = {"type": "read", "unread": unread, "head_seq": head_seq}
    if up_to_seq is not None:
        frame["up_to_seq"] = up_to_seq
    else:
        frame["ids"] = ids or []
    return encode(frame)


def unread_event(*, ids: list[int], unread: int, head_seq: int) -> str:
    return encode({"type": "unread", "ids": ids, "unread": unread, "head_seq": head_seq})
