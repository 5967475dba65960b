"""The dashboard's preferences page, the email's one-click unsubscribe (RFC 8058), and the one-click action answer."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import delivery, selectors, services
from .errors import NotFound, ServiceError
from .forms import PreferencesForm


def _uid(request: HttpRequest) -> int:
    if request.user.pk is None:
        raise PermissionDenied
    return request.user.pk


def _categories(user_id: int, choices: list[services.Choice]) -> list[tuple[str, str]]:
    """(category, label): everything, my topics, and any other category I chose before."""
    keys = ["", *(f"topic:{t.slug}" for t in selectors.topics_for(user_id) if t.subscribed)]
    keys += sorted({c.category for c in choices} - set(keys))
    return list(services.category_labels(keys).items())


@require_http_methods(["GET", "POST"])
@login_required
def preferences(request: HttpRequest) -> HttpResponse:
    """One select per category and channel (default / on / off), and quiet hours. In-app is always on."""
    user_id = _uid(request)
    current = services.choices(user_id=user_id)
    categories = _categories(user_id, current)
    fallbacks = services.fallbacks(user_id=user_id, categories=[c for c, _ in categories])
    initial = PreferencesForm.initial_from(current, services.quiet_hours(user_id=user_id))
    form = PreferencesForm(request.POST or None, initial=initial, categories=categories, fallbacks=fallbacks)
    if request.method == "POST":
        if form.is_valid():
            services.set_preferences(user_id=user_id, choices=form.choices(), quiet=form.cleaned_data["quiet"])
            messages.success(request, "Preferences saved.")
            return redirect("preferences")
        messages.error(request, "Nothing was saved: correct the fields marked below.")
    state = selectors.stream_state(user_id)
    config = {
        "userId": user_id, "headSeq": state.head_seq, "unread": state.unread, "page": "preferences",
        "urls": {"login": reverse("login"), "pushSubscriptions": "/api/v1/me/push-subscriptions"},
        "vapidPublicKey": delivery.get_settings().vapid_public_key,
    }  # fmt: skip
    context = {"stream": state, "client_config": config, "form": form, "channels": PreferencesForm.CHANNEL_LABELS.values()}
    return render(request, "notifications/preferences.html", context)


@csrf_exempt  # RFC 8058: the mail client POSTs with no session and no CSRF token; the signed token is the proof
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest) -> HttpResponse:
    """GET says what will stop and shows a confirm button (a link scanner must not unsubscribe anyone);
    POST turns the email off. A bad token is 400; a token whose user was deleted since is 410."""
    token = request.GET.get("token", "") or request.POST.get("token", "")
    link = services.unsubscribe_link(token=token) if request.method == "GET" else services.unsubscribe_by_token(token=token)
    template = "notifications/unsubscribe.html"
    if link is None:
        return render(request, template, {"invalid": True}, status=400)
    if link.user_gone:
        return render(request, template, {"gone": True}, status=410)
    return render(request, template, {"token": token, "done": request.method == "POST", "labels": link.labels})


@csrf_exempt  # from an email or a service worker, with no session: the signed token is the proof
@require_http_methods(["GET", "POST"])
def action(request: HttpRequest) -> HttpResponse:
    """GET names the notification and the answer and shows a confirm button (a link scanner must not answer);
    POST answers, as the token's user would from any device: the first answer stands. `Accept: application/json`
    (sw.js) gets the `reply` frame's fields. A bad token is 400; a notification gone since is 404."""
    token = request.GET.get("token", "") or request.POST.get("token", "")
    wants_json = request.method == "POST" and "application/json" in request.headers.get("Accept", "")
    template = "notifications/action.html"
    try:
        if request.method == "GET":
            link, answered = services.action_link(token=token), None
        else:
            result = services.answer_action_by_token(token=token)
            link, answered = (None, None) if result is None else (result[1], result[0])
    except NotFound as exc:
        if wants_json:
            return JsonResponse({"ok": False, "error": exc.code, "message": exc.message}, status=404)
        return render(request, template, {"gone": True}, status=404)
    except ServiceError:
        link = None
    if link is None:
        if wants_json:
            return JsonResponse({"ok": False, "error": "invalid", "message": "this link is not valid"}, status=400)
        return render(request, template, {"invalid": True}, status=400)
    status = 409 if answered is not None and not answered.ok else 200
    if wants_json and answered is not None:
        return JsonResponse(answered.reply(), status=status)
    context = {"token": token, "link": link, "answered": answered}
    return render(request, template, context, status=status)
