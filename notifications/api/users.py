"""Users named by the app's own ids, for a service beside the app (a token with the `users` scope)."""

from __future__ import annotations

from typing import Annotated

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest
from ninja import Path, Router, Status
from pydantic import Field, field_validator

from .. import services
from ..fields import Text
from ..schemas import ERRORS, Locale, Strict, TimeZone
from .security import USERS

router = Router(tags=["users"], auth=USERS)

AppUsername = Annotated[str, Path(min_length=1, max_length=150, description="The app's own id for the user.")]


class UserIn(Strict):
    email: Annotated[str, Field(max_length=254, description="Where email digests go; '' for none.")] | None = None
    name: Annotated[Text, Field(max_length=150)] | None = None
    locale: Locale | None = None
    time_zone: TimeZone | None = Field(default=None, description="Quiet hours follow it.")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value:
            try:
                validate_email(value)  # the rule Django's own EmailField applies
            except ValidationError:
                raise ValueError("not an email address") from None
        return value


class UserOut(Strict):
    username: str
    email: str
    name: str
    locale: str
    time_zone: str


def _out(user: services.AppUser) -> UserOut:
    return UserOut(username=user.username, email=user.email, name=user.name, locale=user.locale, time_zone=user.time_zone)


@router.put("/users/{username}", response={200: UserOut, 201: UserOut, **ERRORS})
def put_user(request: HttpRequest, username: AppUsername, payload: UserIn) -> Status[UserOut]:
    """Create the user the app calls `username`, or update the fields given (201 when created)."""
    fields = services.UserFields(email=payload.email, name=payload.name, locale=payload.locale, time_zone=payload.time_zone)
    user, created = services.put_user(username=username, fields=fields)
    return Status(201 if created else 200, _out(user))


@router.get("/users/{username}", response={200: UserOut, **ERRORS})
def get_user(request: HttpRequest, username: AppUsername) -> UserOut:
    return _out(services.get_user(username=username))


@router.delete("/users/{username}", response={204: None, **ERRORS})
def delete_user(request: HttpRequest, username: AppUsername) -> Status[None]:
    """Delete the user and everything stored for them; their open sockets close at their next heartbeat."""
    services.delete_user(username=username)
    return Status(204, None)
