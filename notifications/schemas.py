"""HTTP API schemas: every request is validated here, once, into typed values; the inside trusts them.

Strings are checked for what PostgreSQL and JSON cannot carry (NUL, lone
surrogates); `data` is bounded in size and depth and holds only JSON that
round-trips (finite numbers within 64 bits); `url` follows rules.safe_url.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

import orjson
from ninja import Schema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from .rules import MAX_SEQ, MAX_URL, SLUG_PATTERN, safe_url

MAX_TITLE = 200
MAX_BODY = 4000
MAX_DATA_BYTES = 8 * 1024
MAX_DATA_DEPTH = 8
MAX_USERS = 1000
MAX_BATCH = 1000
MAX_BATCH_RECIPIENTS = 10_000
MAX_INBOX_PAGE = 200
MAX_IDEMPOTENCY_KEY = 128

KIND_PATTERN = r"^[-a-zA-Z0-9_.:]{1,64}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,128}$"  # visible ASCII, as in HTTP tokens


def fits_64_bits(number: float) -> bool:
    """What a JSON number in `data` may be: jsonb keeps more, but orjson (every frame) does not.

    Floats too: jsonb gives 1e30 back as the integer 1000…000, past 64 bits.
    """
    return -(2**63) <= number < 2**63


def _storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL; neither it nor orjson takes a lone surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _json_value(value: Any, depth: int) -> None:
    if depth > MAX_DATA_DEPTH:
        raise ValueError(f"must be nested at most {MAX_DATA_DEPTH} levels deep")
    if isinstance(value, str):
        _storable(value)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not fits_64_bits(value):
            raise ValueError("integers must fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value) or not fits_64_bits(value):
            raise ValueError("numbers must be finite and between -2**63 and 2**63")
    elif isinstance(value, list):
        for item in value:
            _json_value(item, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(str(key))
            _json_value(item, depth + 1)
    else:  # pragma: no cover - JSON parsing yields nothing else
        raise ValueError("must be JSON")


def _bounded_data(value: dict[str, Any]) -> dict[str, Any]:
    _json_value(value, 1)
    if len(orjson.dumps(value)) > MAX_DATA_BYTES:
        raise ValueError(f"must be at most {MAX_DATA_BYTES} bytes as JSON")
    return value


def _future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        aware = aware.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("is out of range") from None
    if aware <= datetime.now(UTC):
        raise ValueError("must be in the future")
    return aware


Text = Annotated[str, AfterValidator(_storable)]
Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE), AfterValidator(_storable), AfterValidator(_not_blank)]
Body = Annotated[str, Field(max_length=MAX_BODY), AfterValidator(_storable)]
Url = Annotated[str, Field(max_length=MAX_URL), AfterValidator(safe_url)]
Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
Kind = Annotated[str, Field(pattern=KIND_PATTERN)]
Id = Annotated[StrictInt, Field(ge=1, le=MAX_SEQ)]  # strict: `true` is not user 1
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]
Username = Annotated[str, Field(min_length=1, max_length=150), AfterValidator(_storable)]
Data = Annotated[dict[str, Any], AfterValidator(_bounded_data)]


def _known_zone(value: str) -> str:
    if value not in available_timezones():
        raise ValueError("unknown time zone")
    return value


TimeZone = Annotated[str, Field(max_length=64, description="An IANA zone, e.g. Europe/Paris."), AfterValidator(_known_zone)]
Locale = Annotated[str, Field(max_length=35, pattern=r"^$|^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]  # BCP 47, e.g. fr-CA
Expiry = Annotated[datetime | None, AfterValidator(_future)]
Level = Literal["info", "success", "warning", "error"]


class Strict(BaseModel):
    """Request bodies: plain pydantic, not ninja.Schema, whose per-object wrap validator
    (for reading Django models) cost more than the rest of a 500-item batch request."""

    model_config = ConfigDict(extra="forbid")


# --- in ---------------------------------------------------------------------------


class PublishIn(Strict):
    """One notification, to users (ids and/or usernames) or to a topic's subscribers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"users": ["alice"], "title": "Build green", "body": "main #42", "url": "/builds/42", "level": "success"},
                {"topic": "news", "title": "v2 is out", "kind": "release", "data": {"version": "2.0"}},
            ]
        }
    )

    users: list[Id | Username] = Field(
        default_factory=list, max_length=MAX_USERS, description="User ids (integers) and/or usernames (strings)."
    )
    topic: Slug | None = Field(default=None, description="Fan out to the topic's current unmuted subscribers.")
    kind: Kind = "message"
    title: Title
    body: Body = ""
    data: Data = Field(default_factory=dict, description=f"Any JSON object, at most {MAX_DATA_BYTES} bytes.")
    url: Url = Field(default="", description="An http(s) URL or a path starting with '/'.")
    level: Level = "info"
    expires_at: Expiry = Field(default=None, description="After this instant the notification is neither listed nor replayed.")

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


class NotificationOut(Schema):
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
    expires_at: datetime | None
    read: bool
    read_at: datetime | None
    archived_at: datetime | None = Field(description="Set while archived: listed with `archived=true`, not in the inbox.")
    snoozed_until: datetime | None = Field(description="Set while snoozed: listed with `snoozed=true`; back as new at this time.")


class InboxOut(Schema):
    items: list[NotificationOut]
    head_seq: int = Field(description="The user's latest seq when the page was read.")
    unread: int
    unseen: int
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
