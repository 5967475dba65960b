"""System checks: a host that leaves out a piece the app needs fails at start, told which piece (docs/integrate.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.urls import NoReverseMatch, reverse

from .embed import INSTALLED_APPS

REQUIRED_MIDDLEWARE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
)
REQUIRED_APPS = ("django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions", *INSTALLED_APPS)


@register(Tags.compatibility)
def installed(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = [
        Error(
            f"INSTALLED_APPS lacks {name!r}, which the notifications app needs.",
            hint="Splice in notifications.embed.INSTALLED_APPS: INSTALLED_APPS = [..., *notifications.embed.INSTALLED_APPS].",
            id="notifications.E001",
        )
        for name in REQUIRED_APPS
        if not apps.is_installed(name)
    ]
    errors += [
        Error(
            f"MIDDLEWARE lacks {name!r}: browser sockets and pages are authenticated by the host's session.",
            id="notifications.E002",
        )
        for name in REQUIRED_MIDDLEWARE
        if name not in settings.MIDDLEWARE
    ]
    return errors


@register(Tags.urls)
def urls_included(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    try:
        reverse("api-v1:unread_count")
    except NoReverseMatch:
        return [
            Error(
                "The notifications URLs are not in the host's URLconf.",
                hint='Add path("notifications/", include("notifications.urls")) to the ROOT_URLCONF urlpatterns.',
                id="notifications.E003",
            )
        ]
    return []
