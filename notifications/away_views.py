"""The dashboard's preferences page and the email's one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

from datetime import time
from zoneinfo import available_timezones

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import delivery, selectors, services
from .models import Channel


def _uid(request: HttpRequest) -> int:
    if request.user.pk is None:
        raise PermissionDenied
    return request.user.pk


def _categories(user_id: int, choices: list[services.Choice]) -> list[tuple[str, str]]:
    """(category, label): everything, my topics, and any other category I chose before."""
    found = {"": "Everything", **{f"topic:{t.slug}": t.title for t in selectors.topics_for(user_id) if t.subscribed}}
    for c in choices:
        found.setdefault(c.category, c.category)
    return list(found.items())


@require_http_methods(["GET", "POST"])
@login_required
def preferences(request: HttpRequest) -> HttpResponse:
    """One select per category and channel (default / on / off), and quiet hours. In-app is always on."""
    user_id = _uid(request)
    current = services.choices(user_id=user_id)
    categories = _categories(user_id, current)
    if request.method == "POST":
        chosen = [
            services.Choice(channel, category, value == "on")
            for category, _ in categories
            for channel in Channel.values
            if (value := request.POST.get(f"{channel}|{category}")) in {"on", "off"}
        ]
        valid, quiet = _quiet(request)
        if valid:
            services.set_preferences(user_id=user_id, choices=chosen, quiet=quiet)
            messages.success(request, "Preferences saved.")
            return redirect("preferences")
        messages.error(request, "Quiet hours need a known time zone and a start and end time that differ.")
    state = selectors.stream_state(user_id)
    by_key = {(c.channel, c.category): "on" if c.enabled else "off" for c in current}
    rows = [(category, label, [(ch, by_key.get((ch, category), "")) for ch in Channel.values]) for category, label in categories]
    config = {
        "userId": user_id, "headSeq": state.head_seq, "unread": state.unread, "page": "preferences",
        "urls": {"login": reverse("login"), "pushSubscriptions": "/api/v1/me/push-subscriptions"},
        "vapidPublicKey": delivery.get_settings().vapid_public_key,
    }  # fmt: skip
    context = {
        "stream": state,
        "client_config": config,
        "rows": rows,
        "channels": Channel.values,
        "quiet": services.quiet_hours(user_id=user_id),
    }
    return render(request, "notifications/preferences.html", context)


def _quiet(request: HttpRequest) -> tuple[bool, services.Quiet | None]:
    """(valid, the posted quiet hours or None for none)."""
    start, end, zone = (request.POST.get(k, "").strip() for k in ("quiet_start", "quiet_end", "time_zone"))
    if not start and not end:
        return True, None
    try:
        parsed = services.Quiet(zone or "UTC", time.fromisoformat(start), time.fromisoformat(end))
    except ValueError:
        return False, None
    return parsed.time_zone in available_timezones() and parsed.start != parsed.end, parsed


@csrf_exempt  # RFC 8058: the mail client POSTs with no session and no CSRF token; the signed token is the proof
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest) -> HttpResponse:
    """GET shows a confirm button (a link scanner must not unsubscribe anyone); POST turns the email off."""
    token = request.GET.get("token", "") or request.POST.get("token", "")
    if request.method == "GET":
        return render(request, "notifications/unsubscribe.html", {"token": token, "done": False})
    categories = services.unsubscribe_by_token(token=token)
    if categories is None:
        return render(request, "notifications/unsubscribe.html", {"invalid": True}, status=400)
    return render(request, "notifications/unsubscribe.html", {"done": True, "categories": categories, "site": settings.DEFAULT_FROM_EMAIL})
