"""A notification's fields, defined once: what a publisher sets, with each field's rule, and what a reader gets.

- ContentFields: every field a publisher sets, its rule and its default. The API's PublishIn and
  services.Content are both ContentFields, and constructing a Content validates it, so every way
  in (the API, notify(), the dashboard's form, the CLI) applies the same rules. Code holding values
  validated already (the API, after PublishIn) builds one with Content.trusted().
- FIELDS: what a reader gets, in frame order, each with the column it is read from, and whether the
  `notification` frame carries it (and so the dashboard, the clients and the Web Push payload's
  source) or only the HTTP API.

Code that moves a notification from one shape to another iterates these (storage rows, frames, both
replays, the API's answers, the CLI's options). What has to be spelled out elsewhere (the model and its
migration, the API's NotificationOut for OpenAPI, the stand-alone Python client, notify()'s keyword
arguments, dashboard.js and the item template) is held to them by tests/test_frames.py.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple, NotRequired

import orjson
from django.core.exceptions import ObjectDoesNotExist
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic needs it, not typing's, for TypedDict on Python < 3.12

from .errors import ServiceError
from .rules import MAX_URL, SLUG_PATTERN, safe_url

MAX_TITLE = 200
MAX_BODY = 4000
MAX_DATA_BYTES = 8 * 1024
MAX_DATA_DEPTH = 8
MAX_ACTIONS = 3
MAX_ACTION_LABEL = 64
MAX_GROUP_KEY = 200
KIND_PATTERN = r"^[-a-zA-Z0-9_.:]{1,64}$"


# --- rules for text and JSON, shared with the rest of the API's schemas ------------------------


def fits_64_bits(number: float) -> bool:
    """What a JSON number in `data` may be: jsonb keeps more, but orjson (every frame) does not.

    Floats too: jsonb gives 1e30 back as the integer 1000…000, past 64 bits.
    """
    return -(2**63) <= number < 2**63


def storable(value: str) -> str:
    """PostgreSQL text cannot hold NUL; neither it nor orjson takes a lone surrogate."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _json_value(value: Any, depth: int) -> None:
    if depth > MAX_DATA_DEPTH:
        raise ValueError(f"must be nested at most {MAX_DATA_DEPTH} levels deep")
    if isinstance(value, str):
        storable(value)
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
            storable(str(key))
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


Text = Annotated[str, AfterValidator(storable)]
Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE), AfterValidator(storable), AfterValidator(not_blank)]
Body = Annotated[str, Field(max_length=MAX_BODY), AfterValidator(storable)]
Url = Annotated[str, Field(max_length=MAX_URL), AfterValidator(safe_url)]
Kind = Annotated[str, Field(pattern=KIND_PATTERN)]
Data = Annotated[dict[str, Any], AfterValidator(_bounded_data)]
Expiry = Annotated[datetime | None, AfterValidator(_future)]
Level = Literal["info", "success", "warning", "error"]
Style = Literal["primary", "secondary", "danger"]


@with_config(ConfigDict(extra="forbid"))
class Action(TypedDict):
    """A button on a notification. With a url it is a link; without one, clicking it answers with its id."""

    id: Annotated[StrictStr, Field(pattern=SLUG_PATTERN, description="A slug of at most 64 characters, unique in the notification.")]
    label: Annotated[StrictStr, Field(min_length=1, max_length=MAX_ACTION_LABEL), AfterValidator(storable), AfterValidator(not_blank)]
    style: Style
    url: NotRequired[Url]


def _actions(actions: list[Action]) -> list[Action]:
    ids = [a["id"] for a in actions]
    if len(set(ids)) != len(ids):
        raise ValueError("action ids must be unique")
    # Stored and sent with every key, so a reader never has to tell a missing url from an empty one.
    return [Action(id=a["id"], label=a["label"], style=a["style"], url=a.get("url", "")) for a in actions]


Actions = Annotated[list[Action], Field(max_length=MAX_ACTIONS), AfterValidator(_actions)]
GroupKey = Annotated[str, Field(max_length=MAX_GROUP_KEY), AfterValidator(storable)]


# --- what a publisher sets ------------------------------------------------------------------------


class ContentFields(BaseModel):
    """Every field a publisher sets, in the order the API documents them. Each is a column of Notification."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind = Field(default="message", description="A category, e.g. build.failed: preferences match it and its dotted prefixes.")
    title: Title = Field(description=f"The headline, plain text, at most {MAX_TITLE} characters.")
    body: Body = Field(default="", description=f"Plain text, at most {MAX_BODY} characters.")
    data: Data = Field(default_factory=dict, description=f"Any JSON object, at most {MAX_DATA_BYTES} bytes.")
    url: Url = Field(default="", description="An http(s) URL or a path starting with '/'.")
    level: Level = Field(default="info", description="How it is shown: info, success, warning or error.")
    expires_at: Expiry = Field(default=None, description="After this instant the notification is neither listed nor replayed.")
    actions: Actions = Field(
        default_factory=list,
        description=f"Up to {MAX_ACTIONS} buttons: {{id, label, style: primary|secondary|danger, url?}}. "
        "One without a url is answered by the user; one with a url opens it.",
    )
    group_key: GroupKey = Field(
        default="", description="Notifications of a user with the same key show as one row in the inbox (latest, count, actors)."
    )


class Content(ContentFields):
    """What a notification says, as the publish services take it: valid by construction.

    topic_id and actor_id are resolved by the edge (a topic's slug, the caller), never sent by a client.
    """

    model_config = ConfigDict(frozen=True)

    topic_id: int | None = None
    actor_id: int | None = None

    @classmethod
    def checked(cls, **values: Any) -> Content:
        """A Content, or ServiceError `invalid_field` naming each field that breaks its rule (and why)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            problems: dict[str, str] = {}
            for error in exc.errors():
                path = ".".join(str(p) for p in error["loc"]) or "content"
                problems[path] = str(error["msg"]).removeprefix("Value error, ")
            summary = "; ".join(f"{k}: {v}" for k, v in list(problems.items())[:3])
            raise ServiceError("invalid_field", f"invalid notification ({summary})", fields=problems) from None

    @classmethod
    def trusted(cls, **values: Any) -> Content:
        """A Content from values validated already (or, in tests, rows the edges would refuse): no rule is run."""
        return cls.model_construct(**values)


CONTENT_NAMES = tuple(ContentFields.model_fields)  # what a publisher sets
CONTENT_COLUMNS = tuple(Content.model_fields)  # every one a Notification column (attname)


# --- what a reader gets ---------------------------------------------------------------------------


class Shown(NamedTuple):
    """A field as a reader gets it."""

    name: str  # its key in frames and in the API's answers
    column: str  # the Notification lookup it is read from (Django ORM path)
    frame: bool = True  # in the `notification` frame; False: the HTTP API's answers only


# The answer that stands (models.ActionAnswer, read through its reverse one-to-one), or None; `state` events carry it.
ANSWER = Shown("answer", "answer__action", frame=False)
# In frame order. `topic` is the topic's slug; `read` is whether read_at is set.
FIELDS: tuple[Shown, ...] = (
    Shown("seq", "seq"),
    Shown("id", "id"),
    Shown("topic", "topic__slug"),
    Shown("kind", "kind"),
    Shown("title", "title"),
    Shown("body", "body"),
    Shown("data", "data"),
    Shown("url", "url"),
    Shown("level", "level"),
    Shown("created_at", "created_at"),
    Shown("read", "read_at"),
    Shown("actions", "actions"),
    Shown("group_key", "group_key"),
    Shown("expires_at", "expires_at", frame=False),
    Shown("read_at", "read_at", frame=False),
    # Where it is in the user's inbox: the frame leaves these out, `state` events carry their changes.
    Shown("archived_at", "archived_at", frame=False),
    Shown("snoozed_until", "snoozed_until", frame=False),
    ANSWER,
)
FRAME_FIELDS = tuple(f for f in FIELDS if f.frame)
API_ONLY_FIELDS = tuple(f for f in FIELDS if not f.frame)


def read(row: object, column: str) -> Any:
    """A Shown column of a model instance: followed through relations; None where one is missing."""
    value = row
    for part in column.split("__"):
        try:
            value = getattr(value, part)
        except ObjectDoesNotExist:  # a reverse one-to-one with no row (no answer yet)
            return None
        if value is None:
            return None
    return value
