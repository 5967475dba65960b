"""Changes of my inbox's state over HTTP: the socket's ops (docs/protocol.md, "Inbox state"), answered alike.

Each takes the client's event id as the Idempotency-Key header or `id` in the body: the same id
again applies nothing and answers 200 with `repeated: true`, as the socket answers a repeat.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from django.http import HttpRequest
from ninja import Header, Router, Status

from .. import changes, services
from ..change_schemas import AnswerIn, AnswerOut, ChangeIn, ChangeOut, ReadIn, SeenIn, SnoozeIn, UnreadIn
from ..changes import CLIENT_ID_PATTERN
from ..errors import ServiceError
from ..schemas import ERRORS
from . import limits
from .security import caller

router = Router(tags=["me"], throttle=limits.ME)  # auth: the API default, READ

EventId = Annotated[
    str | None,
    Header(
        default=None,
        alias="Idempotency-Key",
        pattern=CLIENT_ID_PATTERN,
        description="The client's id for this change (or `id` in the body): the same id again applies nothing and answers 200.",
    ),
]


class ChangeBody(Protocol):
    id: str | None

    def change(self, op: str) -> changes.Change: ...


def _client_id(header_id: str | None, body_id: str | None) -> str | None:
    if header_id is not None and body_id is not None and header_id != body_id:
        raise ServiceError("invalid", "the Idempotency-Key header and the body's 'id' differ: send the id once", status=422)
    return header_id or body_id


def _apply(request: HttpRequest, op: str, payload: ChangeBody, header_id: str | None) -> ChangeOut:
    client_id = _client_id(header_id, payload.id)
    outcome = services.change_inbox(user_id=caller(request).user_id, change=payload.change(op), client_id=client_id)
    return ChangeOut(
        op=outcome.op, seq=outcome.seq, changed=outcome.changed, changed_ids=outcome.changed_ids, up_to_seq=outcome.up_to_seq,
        unread=outcome.unread, unseen=outcome.unseen, head_seq=outcome.head_seq, repeated=outcome.repeated,
    )  # fmt: skip


@router.post("/me/notifications/read", response={200: ChangeOut, **ERRORS})
def read(request: HttpRequest, payload: ReadIn, idempotency_key: EventId = None) -> ChangeOut:
    """Mark some of my notifications read (ids not mine are ignored), all in the inbox, or by filter; every device hears of it."""
    return _apply(request, changes.READ, payload, idempotency_key)


@router.post("/me/notifications/unread", response={200: ChangeOut, **ERRORS})
def unread(request: HttpRequest, payload: UnreadIn, idempotency_key: EventId = None) -> ChangeOut:
    """Mark some of my notifications unread again."""
    return _apply(request, changes.UNREAD, payload, idempotency_key)


@router.post("/me/notifications/seen", response={200: ChangeOut, **ERRORS})
def seen(request: HttpRequest, payload: SeenIn, idempotency_key: EventId = None) -> ChangeOut:
    """I have seen everything up to this seq: the unseen count drops to what is above it."""
    return _apply(request, changes.SEEN, payload, idempotency_key)


@router.post("/me/notifications/archive", response={200: ChangeOut, **ERRORS})
def archive(request: HttpRequest, payload: ChangeIn, idempotency_key: EventId = None) -> ChangeOut:
    """Out of my inbox into the archive, by ids or by filter (`{"filter": {}}` clears the inbox)."""
    return _apply(request, changes.ARCHIVE, payload, idempotency_key)


@router.post("/me/notifications/unarchive", response={200: ChangeOut, **ERRORS})
def unarchive(request: HttpRequest, payload: ChangeIn, idempotency_key: EventId = None) -> ChangeOut:
    """Back from the archive into my inbox."""
    return _apply(request, changes.UNARCHIVE, payload, idempotency_key)


@router.post("/me/notifications/delete", response={200: ChangeOut, **ERRORS})
def delete(request: HttpRequest, payload: ChangeIn, idempotency_key: EventId = None) -> ChangeOut:
    """Gone for me on every device; by filter from the inbox, or with `archived: true` from the archive."""
    return _apply(request, changes.DELETE, payload, idempotency_key)


@router.post("/me/notifications/snooze", response={200: ChangeOut, **ERRORS})
def snooze(request: HttpRequest, payload: SnoozeIn, idempotency_key: EventId = None) -> ChangeOut:
    """Hidden until `until`; then back in my inbox as new (a new seq, unread, live, and due on email and Web Push again)."""
    return _apply(request, changes.SNOOZE, payload, idempotency_key)


@router.post("/me/notifications/action", response={200: AnswerOut, 409: AnswerOut, **ERRORS})
def action(request: HttpRequest, payload: AnswerIn, idempotency_key: EventId = None) -> Status[AnswerOut]:
    """Answer one of a notification's actions: the first answer stands on every device and marks it read (409 names it)."""
    answered = services.answer_action(
        user_id=caller(request).user_id, seq=payload.seq, action_id=payload.action, client_id=_client_id(idempotency_key, payload.id)
    )
    return Status(200 if answered.ok else 409, AnswerOut(**answered.reply()))
