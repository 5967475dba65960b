"""The caller's own inbox, read state, topics, subscriptions and WebSocket ticket (token with read scope, or a session)."""

from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Field, Path, Query, Router, Schema, Status
from pydantic import model_validator

from .. import auth, conf, fields, frames, selectors, services
from ..errors import NotFound
from ..fields import API_ONLY_FIELDS, GroupKey
from ..models import Notification, Subscription
from ..rules import SLUG_PATTERN
from ..schemas import (
    ERRORS,
    MAX_INBOX_PAGE,
    GroupOut,
    InboxItemOut,
    InboxOut,
    Seq,
    Slug,
    SubscribeIn,
    SubscriptionOut,
    TicketOut,
    TopicOut,
    UnreadOut,
)
from . import limits
from .security import caller

router = Router(tags=["me"], throttle=limits.ME)  # auth: the API default, READ


class InboxQuery(Schema):
    since: Seq | None = Field(default=None, description="Only seq > since, oldest first (catching up).")
    before: Seq | None = Field(default=None, description="Only seq < before; newest first unless `since` is given.")
    limit: int = Field(default=50, ge=1, le=MAX_INBOX_PAGE)
    unread: bool = Field(default=False, description="Only unread notifications.")
    topic: Slug | None = None
    group_key: GroupKey | None = Field(default=None, description="Only this group's members (what a grouped row stands for).")
    grouped: bool = Field(
        default=False, description="One row per group_key: the group's latest, with `group` {count, unread, actors}. Newest first."
    )
    archived: bool = Field(default=False, description="The archive instead of the inbox.")
    snoozed: bool = Field(default=False, description="The snoozed ones instead of the inbox.")

    @model_validator(mode="after")
    def _consistent(self) -> InboxQuery:
        if self.grouped and self.since is not None:
            raise ValueError("grouped pages are newest first: page with `before`, not `since`")
        if self.archived and self.snoozed:
            raise ValueError("ask for the archive or the snoozed ones, not both")
        if self.grouped and (self.archived or self.snoozed):
            raise ValueError("grouped rows are the inbox's; list the archive or the snoozed ones ungrouped")
        return self

    @property
    def view(self) -> str:
        return selectors.View.ARCHIVED if self.archived else selectors.View.SNOOZED if self.snoozed else selectors.View.INBOX


@router.get("/me/notifications", response={200: InboxOut, **ERRORS})
def inbox(request: HttpRequest, filters: Query[InboxQuery]) -> InboxOut:
    """A page of my inbox (or archive, or snoozed ones). Newest first (page on with `before`), or oldest first after `since`; or grouped."""
    user_id = caller(request).user_id
    state = selectors.stream_state(user_id)
    if filters.grouped:
        return _grouped(user_id, state, filters)
    rows = selectors.inbox(
        user_id, since=filters.since, before=filters.before, limit=filters.limit + 1, unread_only=filters.unread, topic=filters.topic,
        group_key=filters.group_key, view=filters.view,
    )  # fmt: skip
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    last = rows[-1].seq if more else None
    return InboxOut(
        items=[_notification(n) for n in rows],
        head_seq=state.head_seq,
        unread=state.unread,
        unseen=state.unseen,
        next_before=last if filters.since is None else None,
        next_since=last if filters.since is not None else None,
    )


def _grouped(user_id: int, state: selectors.StreamState, filters: InboxQuery) -> InboxOut:
    rows = selectors.inbox_rows(
        user_id, before=filters.before, limit=filters.limit + 1, unread_only=filters.unread, topic=filters.topic,
        group_key=filters.group_key,
    )  # fmt: skip
    more = len(rows) > filters.limit
    rows = rows[: filters.limit]
    return InboxOut(
        items=[_notification(r.notification, group=r.group) for r in rows],
        head_seq=state.head_seq,
        unread=state.unread,
        unseen=state.unseen,
        unread_rows=selectors.unread_rows(user_id),
        next_before=rows[-1].notification.seq if more else None,
        next_since=None,
    )


@router.get("/me/unread-count", response={200: UnreadOut, **ERRORS})
def unread_count(request: HttpRequest) -> UnreadOut:
    """My unread and unseen counts (the bell's badge), as of head_seq."""
    state = selectors.stream_state(caller(request).user_id)
    return UnreadOut(unread=state.unread, unseen=state.unseen, head_seq=state.head_seq)


@router.get("/topics", response={200: list[TopicOut], **ERRORS})
def topics(request: HttpRequest) -> list[TopicOut]:
    """Public topics, and private ones I am subscribed to."""
    return [TopicOut(**t.__dict__) for t in selectors.topics_for(caller(request).user_id)]


@router.get("/me/subscriptions", response={200: list[SubscriptionOut], **ERRORS})
def subscriptions(request: HttpRequest) -> list[SubscriptionOut]:
    return [_subscription(s) for s in selectors.subscriptions_of(caller(request).user_id)]


@router.post("/me/subscriptions", response={201: SubscriptionOut, **ERRORS})
def subscribe(request: HttpRequest, payload: SubscribeIn) -> Status[SubscriptionOut]:
    """Subscribe to a public topic (idempotent)."""
    subscription = services.subscribe(user_id=caller(request).user_id, slug=payload.topic)
    return Status(201, _subscription(subscription))


@router.delete("/me/subscriptions/{topic}", response={204: None, **ERRORS})
def unsubscribe(request: HttpRequest, topic: Annotated[str, Path(pattern=SLUG_PATTERN)]) -> Status[None]:
    if not services.unsubscribe(user_id=caller(request).user_id, slug=topic):
        raise NotFound("not_found", f"not subscribed to {topic!r}")
    return Status(204, None)


@router.post("/ws-ticket", response={201: TicketOut, **ERRORS}, throttle=limits.TICKETS)
def ws_ticket(request: HttpRequest) -> Status[TicketOut]:
    """A single-use ticket for `/ws/notifications/?ticket=…`, for a browser on another origin."""
    found = caller(request)
    # The ticket and its socket hold only while this token or session does (auth.redeem_ticket, the heartbeat).
    session_key = "" if found.token else request.session.session_key or ""
    ticket = auth.issue_ticket(user=found.user, token=found.token, session_key=session_key)
    return Status(201, TicketOut(ticket=ticket, expires_in=conf.get().ticket_seconds))


def _notification(n: Notification, *, group: selectors.Group | None = None) -> InboxItemOut:
    """The frame's fields, and those only the API gives (fields.FIELDS)."""
    values = frames.notification_frame(n, n.topic.slug if n.topic else None)
    del values["type"]
    values.update({f.name: fields.read(n, f.column) for f in API_ONLY_FIELDS})
    return InboxItemOut(**values, group=GroupOut(**vars(group)) if group else None)


def _subscription(s: Subscription) -> SubscriptionOut:
    return SubscriptionOut(topic=s.topic.slug, title=s.topic.title, muted=s.muted, created_at=s.created_at)
