"""My away channels: preferences and quiet hours, and this browser's Web Push subscription."""

from __future__ import annotations

from typing import Annotated

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field, field_validator, model_validator

from .. import delivery, services
from ..delivery.subscription import auth_key, endpoint_refusal, p256dh_key
from ..errors import NotFound, ServiceError
from ..models import Channel
from ..schemas import ERRORS, QuietIO, Strict
from . import limits
from .security import caller

router = Router(tags=["me"], throttle=limits.ME)  # auth: the API default, READ

CATEGORY_PATTERN = r"^(|topic:[-a-zA-Z0-9_]{1,64}|kind:[-a-zA-Z0-9_.:]{1,64})$"
# Printable ASCII: a NUL or a control character is a clear 422 here, not a database error.
Endpoint = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[!-~]+$")]


class ChoiceIO(Strict):
    channel: Channel
    category: str = Field(default="", pattern=CATEGORY_PATTERN, description="'' for everything, 'topic:<slug>' or 'kind:<prefix>'.")
    enabled: bool


class PreferencesIO(Strict):
    preferences: list[ChoiceIO] = Field(default_factory=list, max_length=200)
    quiet_hours: QuietIO | None = None

    @model_validator(mode="after")
    def _unique(self) -> PreferencesIO:
        if len({(c.channel, c.category) for c in self.preferences}) != len(self.preferences):
            raise ValueError("one choice per channel and category")
        return self


class PushKeys(Strict):
    p256dh: str = Field(max_length=200, description="base64url (padding optional) of an uncompressed P-256 point, 65 bytes.")
    auth: str = Field(max_length=200, description="base64url (padding optional) of the 16-byte auth secret.")

    # Checked here so that a key pywebpush cannot use is a 422 now, not a failed push later; stored canonical.
    _p256dh = field_validator("p256dh")(p256dh_key)
    _auth = field_validator("auth")(auth_key)


class PushSubscriptionIn(Strict):
    """A browser's PushSubscription.toJSON()."""

    endpoint: Endpoint
    keys: PushKeys
    expirationTime: int | None = None


class PushEndpointIn(Strict):
    endpoint: Endpoint


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
    """Register this browser for Web Push. The endpoint must be https on a known push service; past
    NOTIFY_PUSH_MAX_SUBSCRIPTIONS, my oldest subscription gives way to this one."""
    config = delivery.get_settings()
    refusal = endpoint_refusal(payload.endpoint, config.push_endpoint_hosts)
    if refusal:
        message = "the endpoint is not an https URL of an allowed push service"
        raise ServiceError("invalid", message, fields={"endpoint": refusal}, status=422)
    s = services.add_push_subscription(
        user_id=caller(request).user_id,
        endpoint=payload.endpoint,
        p256dh=payload.keys.p256dh,
        auth=payload.keys.auth,
        keep=config.push_max_subscriptions,
    )
    return Status(201, PushSubscriptionOut(endpoint=s.endpoint, created_at=s.created_at.isoformat()))


@router.delete("/me/push-subscriptions", response={204: None, **ERRORS})
def remove_push_subscription(request: HttpRequest, payload: PushEndpointIn) -> Status[None]:
    if not services.remove_push_subscription(user_id=caller(request).user_id, endpoint=payload.endpoint):
        raise NotFound("not_found", "no such push subscription")
    return Status(204, None)
