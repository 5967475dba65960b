"""Users named by an app's own ids, for a service run beside the app (docs/integrate.md, "Beside the app").

The app creates or updates a user whenever it likes (PUT is idempotent) and
deletes one with everything stored for them: every row of ours that names a
user cascades from it, and its open sockets close at their next heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Field

from ..errors import NotFound, ServiceError
from ..models import QuietHours, UserProfile


@dataclass(frozen=True)
class UserFields:
    """What the app may set; None leaves a field as it is."""

    email: str | None = None
    name: str | None = None
    locale: str | None = None
    time_zone: str | None = None


@dataclass(frozen=True)
class AppUser:
    username: str
    email: str
    name: str
    locale: str
    time_zone: str


def _check_username(username: str) -> None:
    model = get_user_model()
    field = model._meta.get_field(model.USERNAME_FIELD)
    assert isinstance(field, Field)
    try:
        field.clean(username, None)
    except ValidationError as e:
        raise ServiceError("invalid", f"username: {' '.join(e.messages)}", fields={"username": " ".join(e.messages)}, status=422) from e


def put_user(*, username: str, fields: UserFields) -> tuple[AppUser, bool]:
    """Create or update the user the app calls `username`; True when it was created."""
    _check_username(username)
    model = get_user_model()
    with transaction.atomic():
        user = model._default_manager.select_for_update().filter(**{model.USERNAME_FIELD: username}).first()
        created = user is None
        if user is None:
            user = model(**{model.USERNAME_FIELD: username})
            user.set_unusable_password()  # it signs in through the app's connection tokens only
        if fields.email is not None:
            setattr(user, model.get_email_field_name(), fields.email)
        user.save()
        profile, _ = UserProfile.objects.get_or_create(user=user)
        for name in ("name", "locale", "time_zone"):
            if (value := getattr(fields, name)) is not None:
                setattr(profile, name, value)
        profile.save()
        if fields.time_zone:
            QuietHours.objects.filter(user=user).update(time_zone=fields.time_zone)
    return _app_user(user, profile), created


def get_user(*, username: str) -> AppUser:
    user = _find(username)
    profile = UserProfile.objects.filter(user_id=user.pk).first() or UserProfile(user_id=user.pk)
    return _app_user(user, profile)


def delete_user(*, username: str) -> None:
    _find(username).delete()


def _find(username: str) -> AbstractBaseUser:
    model = get_user_model()
    user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    if user is None:
        raise NotFound("not_found", "no such user")
    return user


def _app_user(user: AbstractBaseUser, profile: UserProfile) -> AppUser:
    return AppUser(
        username=user.get_username(),
        email=getattr(user, get_user_model().get_email_field_name(), "") or "",
        name=profile.name,
        locale=profile.locale,
        time_zone=profile.time_zone,
    )
