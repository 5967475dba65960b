"""My away channels: preferences and quiet hours, and this browser's Web Push subscription."""

from __future__ import annotations

from datetime import time
from typing import Annotated
from zoneinfo import available_timezones

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field, field_validator, model_validator

from .. import delivery, services
from ..delivery.webpush import endpoint_allowed
from ..errors import NotFound, ServiceError
from ..models import Channel
from ..schemas import ERRORS, Strict
from . import limits
from .security import caller

router = Router(tags=["me"], throttle=limits.ME)  # auth: the API default, READ

CATEGORY_PATTERN = r"^(|topic:[-a-zA-Z0-9_]{1,64}|kind:[-a-zA-Z0-9_.:]{1,64})$"
Key = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[-A-Za-z0-9_=]+$")]


class ChoiceIO(Strict):
    channel: Channel
    category: str = Field(default="", pattern=CATEGORY_PATTERN, description="'' for everything, 'topic:<slug>' or 'kind:<prefix>'.")
    enabled: bool


class QuietIO(Strict):
    time_zone: str = Field(default="UTC", max_length=64, description="An IANA zone, e.g. Europe/Paris.")
    start: time = Field(description="A wall-clock time in time_zone, without an offset, e.g. 22:00.")
    end: time = Field(description="A wall-clock time in time_zone, without an offset, e.g. 07:30.")

    @field_validator("start", "end")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        # The zone says where: an offset as well would be a second, conflicting answer.
        if value.tzinfo is not None:
            raise ValueError("a wall-clock time without an offset: the zone is time_zone")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in available_timezones():
            raise ValueError("unknown time zone")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietIO:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class PreferencesIO(Strict):
    preferences: list[ChoiceIO] = Field(default_factory=list, max_length=200)
    quiet_hours: QuietIO | None = None

    @model_validator(mode="after")
    def _unique(self) -> PreferencesIO:
        if len({(c.channel, c.category) for c in self.preferences}) != len(self.preferences):
            raise ValueError("one choice per channel and category")
        return self


class PushKeys(Strict):
    p256dh: Key
    auth: Key


class PushSubscriptionIn(Strict):
    """A browser's PushSubscription.toJSON()."""

    endpoint: str = Field(max_length=1000)
    keys: PushKeys
    expirationTime: int | None = None


class PushEndpointIn(Strict):
    endpoint: str = Field(max_length=1000)


class PushSubscriptionOut(Schema):
    endpoint: str
    created_at: str


@router.get("/me/preferences", response={200: PreferencesIO, **ERRORS})
def preferences(request: HttpRequest) -> PreferencesIO:
    """My choices per channel and category, and my quiet hours (email and push wait through them)."""
    user_id = caller(request).user_id
    quiet = services.quiet_hours(user_id=user_id)
    return PreferencesIO(
        preferences=[
            ChoiceIO(channel=Channel(c.channel), category=c.category, enabled=c.enabled) for c in services.choices(user_id=user_id)
        ],
        quiet_hours=QuietIO(time_zone=quiet.time_zone, start=quiet.start, end=quiet.end) if quiet else None,
    )


@router.put("/me/preferences", response={200: PreferencesIO, **ERRORS})
def set_preferences(request: HttpRequest, payload: PreferencesIO) -> PreferencesIO:
    """Replace my choices and quiet hours; what is not listed falls back to the operator's defaults."""
    q = payload.quiet_hours
    services.set_preferences(
        user_id=caller(request).user_id,
        choices=[services.Choice(c.channel, c.category, c.enabled) for c in payload.preferences],
        quiet=services.Quiet(q.time_zone, q.start, q.end) if q else None,
    )
    return payload


@router.post("/me/push-subscriptions", response={201: PushSubscriptionOut, **ERRORS})
def add_push_subscription(request: HttpRequest, payload: PushSubscriptionIn) -> Status[PushSubscriptionOut]:
    """Register this browser for Web Push. The endpoint must be https on a known push service."""
    if not endpoint_allowed(payload.endpoint, delivery.get_settings().push_endpoint_hosts):
        message = "the endpoint is not an https URL of an allowed push service"
        raise ServiceError("invalid", message, fields={"endpoint": "not an allowed push service"}, status=422)
    s = services.add_push_subscription(
        user_id=caller(request).user_id, endpoint=payload.endpoint, p256dh=payload.keys.p256dh, auth=payload.keys.auth
    )
    return Status(201, PushSubscriptionOut(endpoint=s.endpoint, created_at=s.created_at.isoformat()))


@router.delete("/me/push-subscriptions", response={204: None, **ERRORS})
def remove_push_subscription(request: HttpRequest, payload: PushEndpointIn) -> Status[None]:
    if not services.remove_push_subscription(user_id=caller(request).user_id, endpoint=payload.endpoint):
        raise NotFound("not_found", "no such push subscription")
    return Status(204, None)
