"""`{% load notifications %}{% notifications_bell %}`: a live bell on the host's own pages (docs/integrate.md)."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

register = template.Library()


@register.inclusion_tag("notifications/bell.html", takes_context=True)
def notifications_bell(context: template.Context, *, limit: int = 5) -> dict[str, Any]:
    """The bell for the page's logged-in user: nothing for anyone else.

    It reads through the HTTP API and listens on the socket with the page's own
    session cookie, so it needs nothing but the request in the context.
    """
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"show": False}
    return {
        "show": True,
        "user_id": str(user.pk),
        "api": reverse("api-v1:unread_count").removesuffix("me/unread-count"),
        "limit": limit,
    }
