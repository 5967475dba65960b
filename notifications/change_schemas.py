"""HTTP schemas of the inbox's state changes (api/inbox_state.py): validated here, once, into changes.Change values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from ninja import Schema
from pydantic import ConfigDict, Field, StrictBool, field_validator, model_validator

from . import changes
from .changes import CLIENT_ID_PATTERN, KIND_PREFIX_PATTERN
from .rules import MAX_READ_IDS
from .schemas import Id, Seq, Slug, Strict

ClientId = Annotated[
    str,
    Field(
        pattern=CLIENT_ID_PATTERN,
        description="The client's own id for this change (a UUID fits; or the Idempotency-Key header): the same id again applies nothing.",
    ),
]
Ids = Annotated[list[Id], Field(min_length=1, max_length=MAX_READ_IDS)]


class FilterIn(Strict):
    """Which notifications: those of one view (the inbox, or the archive), up to a seq, of a topic, of a kind."""

    topic: Slug | None = None
    kind: Annotated[str, Field(pattern=KIND_PREFIX_PATTERN)] | None = Field(
        default=None, description="A kind or its dotted start: 'build' takes 'build' and 'build.failed'."
    )
    up_to_seq: Seq | None = Field(default=None, description="Default: the head when the change is made (the answer says which).")
    archived: StrictBool = Field(default=False, description="Take from the archive instead of the inbox (unarchive always does).")

    def value(self) -> changes.Filter:
        return changes.Filter(self.topic, self.kind, self.up_to_seq, self.archived)


def _one_of(given: dict[str, bool]) -> None:
    if sum(given.values()) != 1:
        raise ValueError("send one of " + ", ".join(f"'{k}'" for k in given))


class ChangeIn(Strict):
    """A change by ids or by filter (archive, unarchive, delete)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ids": [1, 2]}, {"filter": {"topic": "news"}}, {"filter": {}}]})

    ids: Ids | None = None
    filter: FilterIn | None = None
    id: ClientId | None = None

    @model_validator(mode="after")
    def _ids_or_filter(self) -> ChangeIn:
        _one_of({"ids": bool(self.ids), "filter": self.filter is not None})
        return self

    def change(self, op: str) -> changes.Change:
        return changes.Change(op, ids=tuple(self.ids or ()), filter=self.filter.value() if self.filter is not None else None)


class ReadIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ids": [1, 2]}, {"all": True}, {"filter": {"kind": "build"}}]})

    ids: Ids | None = None
    all: StrictBool = False
    filter: FilterIn | None = None
    id: ClientId | None = None

    @model_validator(mode="after")
    def _ids_or_all(self) -> ReadIn:
        _one_of({"ids": bool(self.ids), "all": self.all, "filter": self.filter is not None})
        return self

    def change(self, op: str) -> changes.Change:
        if self.ids:
            return changes.Change(op, ids=tuple(self.ids))
        return changes.Change(op, filter=self.filter.value() if self.filter is not None else changes.Filter())


class UnreadIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ids": [1, 2]}]})

    ids: Ids
    id: ClientId | None = None

    def change(self, op: str) -> changes.Change:
        return changes.Change(op, ids=tuple(self.ids))


class SeenIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"up_to_seq": 42}]})

    up_to_seq: Seq = Field(description="Everything up to here has been seen (at most the head; never moves back).")
    id: ClientId | None = None

    def change(self, op: str) -> changes.Change:
        return changes.Change(op, up_to_seq=self.up_to_seq)


class SnoozeIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"ids": [7], "until": "2027-01-04T09:00:00+01:00"}]})

    ids: Ids
    until: datetime = Field(description="ISO 8601 with a UTC offset, in the future, at most 365 days ahead.")
    id: ClientId | None = None

    @field_validator("until")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        problem = changes.snooze_until_problem(value, datetime.now(UTC))
        if problem:
            raise ValueError(problem.replace("'until' ", ""))
        return value

    def change(self, op: str) -> changes.Change:
        return changes.Change(op, ids=tuple(self.ids), until=self.until)


class AnswerIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"seq": 7, "action": "approve"}]})

    seq: Seq = Field(description="The notification's seq.")
    action: Slug = Field(description="The id of one of its actions without a url (one with a url is a link, not an answer).")
    id: ClientId | None = None


# --- out --------------------------------------------------------------------------


class ChangeOut(Schema):
    op: str
    seq: int | None = Field(description="The change's state event in the stream; null when it changed nothing.")
    changed: int = Field(description="How many notifications changed.")
    changed_ids: list[int] = Field(description="By ids: those that changed (by filter: not listed).")
    up_to_seq: int | None = Field(description="By filter, and for seen: the seq it was taken up to.")
    unread: int
    unseen: int
    head_seq: int = Field(description="The counts cover every seq up to here.")
    repeated: bool = Field(description="True when this id was applied before: nothing was changed now.")


class AnswerOut(Schema):
    ok: bool = Field(description="False when another answer stands (409): `answer` names it.")
    op: str
    notification: int = Field(description="The notification's id.")
    answer: str = Field(description="The answer that stands: the first one given, on any device.")
    error: str | None = Field(default=None, description="already_answered, when ok is false.")
    message: str | None = None
    seq: int | None = Field(description="The answer's state event in the stream; null when it changed nothing.")
    unread: int
    unseen: int
    head_seq: int = Field(description="The counts cover every seq up to here.")
    repeated: bool = Field(default=False, description="True when this id was applied before: nothing was changed now.")
