"""HTTP API schemas: every request is validated here, once, into typed values; the inside trusts them.

A notification's content and its rules are fields.py's (the one definition of a notification's
fields): strings are checked for what PostgreSQL and JSON cannot carry (NUL, lone surrogates);
`data` is bounded in size and depth and holds only JSON that round-trips (finite numbers within
64 bits); `url` follows rules.safe_url.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any
from zoneinfo import available_timezones

from ninja import Schema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from .fields import ContentFields, storable
from .rules import MAX_SEQ, SLUG_PATTERN

MAX_USERS = 1000
MAX_BATCH = 1000
MAX_BATCH_RECIPIENTS = 10_000
MAX_INBOX_PAGE = 200
MAX_IDEMPOTENCY_KEY = 128

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"  # visible ASCII, as in HTTP tokens

Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
Id = Annotated[StrictInt, Field(ge=1, le=MAX_SEQ)]  # strict: `true` is not user 1
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
Username = Annotated[str, Field(min_length=1, max_length=150), AfterValidator(storable)]


def _known_zone(value: str) -> str:
    if value not in available_timezones():
        raise ValueError("unknown time zone")
    return value


TimeZone = Annotated[str, Field(max_length=64, description="An IANA zone, e.g. Europe/Paris."), AfterValidator(_known_zone)]
Locale = Annotated[str, Field(max_length=35, pattern=r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]  # BCP 47, e.g. fr-CA


class Strict(BaseModel):
    """Request bodies: plain pydantic, not ninja.Schema, whose per-object wrap validator
    (for reading Django models) cost more than the rest of a 500-item batch request."""

    model_config = ConfigDict(extra="forbid")


# --- in ---------------------------------------------------------------------------


class PublishIn(ContentFields, Strict):
    """One notification, to users (ids and/or usernames) or to a topic's subscribers; its content is fields.ContentFields."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"users": ["alice"], "title": "Build green", "body": "main #42", "url": "/builds/42", "level": "success"},
                {"topic": "news", "title": "v2 is out", "kind": "release", "data": {"version": "2.0"}},
                {
                    "users": ["alice"], "title": "Deploy v2.3 to production?", "group_key": "deploys",
                    "actions": [{"id": "approve", "label": "Approve", "style": "primary"},
                                {"id": "logs", "label": "View logs", "style": "secondary", "url": "/deploys/23"}],
                },
            ]
        }
    )  # fmt: skip

    users: list[Id | Username] = Field(
        default_factory=list, max_length=MAX_USERS, description="User ids (integers) and/or usernames (strings)."
    )
    topic: Slug | None = Field(default=None, description="Fan out to the topic's current unmuted subscribers.")

    @model_validator(mode="after")
    def _one_audience(self) -> PublishIn:
        if bool(self.users) == bool(self.topic):
            raise ValueError("name either 'users' or a 'topic'")
        return self


class QuietIO(Strict):
    """Quiet hours, the one rule for them: the API's body and the preferences page (forms.py) both validate here."""

    time_zone: TimeZone = "UTC"
    start: time = Field(description="A wall-clock time in time_zone, without an offset, e.g. 22:00.")
    end: time = Field(description="A wall-clock time in time_zone, without an offset, e.g. 07:30.")

    @field_validator("start", "end")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        # The zone says where: an offset as well would be a second, conflicting answer.
        if value.tzinfo is not None:
            raise ValueError("a wall-clock time without an offset (the time zone says where)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietIO:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class BatchIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"notifications": [{"users": ["alice"], "title": "one"}, {"topic": "news", "title": "two"}]}]}
    )

    notifications: list[PublishIn] = Field(min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _bounded(self) -> BatchIn:
        if sum(len(n.users) for n in self.notifications) > MAX_BATCH_RECIPIENTS:
            raise ValueError(f"at most {MAX_BATCH_RECIPIENTS} named users in one batch")
        return self


class SubscribeIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"topic": "news"}]})

    topic: Slug


# --- out --------------------------------------------------------------------------


class ErrorOut(Schema):
    code: str
    message: str
    fields: dict[str, str] = Field(default_factory=dict, description="Field path -> what is wrong with it.")


ERRORS = {frozenset({400, 401, 403, 404, 413, 422, 429}): ErrorOut}  # every operation's error answers, for OpenAPI


# The publish answers are built from plain values, so they are plain pydantic too (see Strict).
class DeliveryOut(BaseModel):
    recipient: int
    id: int
    seq: int


class PublishOut(BaseModel):
    created: bool = Field(description="False when the Idempotency-Key was seen before: nothing was written.")
    notifications: list[DeliveryOut]


class BatchOut(BaseModel):
    created: bool
    results: list[PublishOut]


class ActionOut(Schema):
    """A stored action as it is (fields.Action is the rule it was written by)."""

    id: str
    label: str
    style: str
    url: str = ""


class NotificationOut(Schema):
    """A notification: the frame's fields (fields.FIELDS), and two timestamps a frame leaves out."""

    id: int
    seq: int
    topic: str | None
    kind: str
    title: str
    body: str
    data: dict[str, Any]
    url: str
    level: str
    created_at: datetime
    read: bool
    actions: list[ActionOut]
    group_key: str
    expires_at: datetime | None
    read_at: datetime | None
    archived_at: datetime | None = Field(description="Set while archived: listed with `archived=true`, not in the inbox.")
    snoozed_until: datetime | None = Field(description="Set while snoozed: listed with `snoozed=true`; back as new at this time.")
    answer: str | None = Field(description="The id of the action the user answered (the first answer stands), or null.")


class GroupOut(Schema):
    key: str
    count: int = Field(description="Notifications in the group (this one included) that the query matches.")
    unread: int
    actors: list[str] = Field(description="The distinct actors (who published), the latest first, at most 5.")
    actor_count: int


class InboxItemOut(NotificationOut):
    group: GroupOut | None = Field(
        default=None, description="With grouped=true, on a row standing for its group: this is the group's latest."
    )


class InboxOut(Schema):
    items: list[InboxItemOut]
    head_seq: int = Field(description="The user's latest seq when the page was read.")
    unread: int
    unseen: int
    unread_rows: int | None = Field(
        default=None, description="With grouped=true: unread rows as the grouped inbox shows them (a group with unread counts once)."
    )
    next_before: int | None = Field(description="Pass as `before` for the next (older) page; null at the end.")
    next_since: int | None = Field(description="Pass as `since` for the next (newer) page; null when caught up.")


class UnreadOut(Schema):
    unread: int
    unseen: int
    head_seq: int


class TopicOut(Schema):
    slug: str
    title: str
    description: str
    public: bool
    subscribed: bool


class SubscriptionOut(Schema):
    topic: str
    title: str
    muted: bool
    created_at: datetime


class TicketOut(Schema):
    ticket: str = Field(description="Single use: connect to /ws/notifications/?ticket=<ticket>.")
    expires_in: int


class HealthOut(Schema):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
