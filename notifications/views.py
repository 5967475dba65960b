"""The dashboard: server-rendered pages, small JSON reads for its scripts, POST forms for every change.

Every page carries the user's stream state (head_seq, unread) so the browser
client connects with `since=head_seq`: the page is the initial state and the
socket brings every event after it (docs/client.md).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import fields, frames, ops, protocol, rules, selectors, services
from .errors import ServiceError
from .forms import ComposeForm, RateLimitedLogin
from .models import Notification

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

View = Callable[..., HttpResponseBase]


def staff_required(view: View) -> View:
    """Logged in (else the login page), and staff (else 403)."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_staff:
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapped


def _uid(request: HttpRequest) -> int:
    """The logged-in user's id (every caller is behind login_required)."""
    pk = request.user.pk
    if pk is None:
        raise PermissionDenied
    return pk


def item(n: Notification, group: selectors.Group | None = None) -> dict[str, Any]:
    """A notification as the dashboard shows it: the protocol frame, plus its safe links, and on a row that
    stands for its group (selectors.inbox_rows), the group's figures."""
    frame = frames.notification_frame(n, n.topic.slug if n.topic else None)
    frame["link"] = rules.link(n.url)
    frame["actions"] = [{**a, "link": rules.link(a.get("url", ""))} for a in n.actions]
    frame["answer"] = fields.read(n, fields.ANSWER.column)  # the answer that stands (an API-only field: the frame leaves it out)
    if group is not None:
        others = group.actor_count - len(group.actors)
        actors = ", ".join(group.actors) + (f" and {others} other{'' if others == 1 else 's'}" if others else "")
        frame["group"] = {**vars(group), "more": group.count - 1, "actors_text": actors}
    return frame


def _client_config(request: HttpRequest, state: selectors.StreamState, page: str, **extra: Any) -> dict[str, Any]:
    """What dashboard.js needs: who, the initial state to connect from, and where to fetch and post."""
    return {
        "userId": _uid(request),
        "headSeq": state.head_seq,
        "unread": state.unread,
        "page": page,
        "urls": {"items": reverse("inbox-items"), "read": reverse("inbox-read"), "login": reverse("login")},
        **extra,
    }


def _page(request: HttpRequest, template: str, page: str, context: dict[str, Any] | None = None) -> HttpResponse:
    state = selectors.stream_state(_uid(request))
    config = _client_config(request, state, page)
    return render(request, template, {"stream": state, "client_config": config, **(context or {})})


def _filters(request: HttpRequest) -> tuple[str | None, bool]:
    topic = request.GET.get("topic") or None
    if topic is not None and not rules.is_slug(topic):
        topic = None
    return topic, request.GET.get("unread") in {"1", "true", "on"}


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


# --- pages -------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Django's login page under the login limits: a refused attempt is a 429 with Retry-After, the form shown again."""

    form_class = RateLimitedLogin
    template_name = "notifications/login.html"
    redirect_authenticated_user = True

    def form_invalid(self, form: RateLimitedLogin) -> HttpResponse:  # type: ignore[override]
        response = super().form_invalid(form)
        if form.retry_after is not None:
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("inbox" if request.user.is_authenticated else "login")


@require_GET
@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    topic, unread_only = _filters(request)
    # The state first, then the rows up to its head: everything after the head
    # comes over the socket (since=head_seq), so nothing falls between the two.
    state = selectors.stream_state(_uid(request))
    rows = selectors.inbox_rows(_uid(request), before=state.head_seq + 1, limit=PAGE_SIZE, unread_only=unread_only, topic=topic)
    config = _client_config(request, state, "inbox", filters={"topic": topic, "unread": unread_only}, pageSize=PAGE_SIZE)
    topics = [t for t in selectors.topics_for(_uid(request)) if t.subscribed or t.slug == topic]
    context = {
        "stream": state,
        "client_config": config,
        "items": [item(r.notification, r.group) for r in rows],
        "more": len(rows) == PAGE_SIZE,
        "topics": topics,
        "topic_filter": topic,
        "unread_filter": unread_only,
    }
    return render(request, "notifications/inbox.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def topics(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        slug = request.POST.get("topic", "")
        action = request.POST.get("action")
        try:
            if action == "subscribe":
                services.subscribe(user_id=_uid(request), slug=slug)
                messages.success(request, f"Subscribed to {slug}.")
            elif action == "unsubscribe":
                services.unsubscribe(user_id=_uid(request), slug=slug)
                messages.success(request, f"Unsubscribed from {slug}.")
        except ServiceError as e:
            messages.error(request, e.message)
        return redirect("topics")
    return _page(request, "notifications/topics.html", "topics", {"topics": selectors.topics_for(_uid(request))})


@require_http_methods(["GET", "POST"])
@staff_required
def compose(request: HttpRequest) -> HttpResponse:
    form = ComposeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            result = form.publish(actor_id=_uid(request))
        except ServiceError as e:
            form.add_error(None, e.message)
        else:
            count = len(result.deliveries)
            messages.success(request, f"Sent to {count} recipient{'' if count == 1 else 's'}.")
            return redirect("compose")
    return _page(request, "notifications/compose.html", "compose", {"form": form})


@require_GET
@staff_required
def ops_page(request: HttpRequest) -> HttpResponse:
    return _page(request, "notifications/ops.html", "ops", {"figures": ops.snapshot()})


# --- small JSON endpoints for the dashboard's scripts ------------------------------------


@require_GET
@login_required
def inbox_items(request: HttpRequest) -> HttpResponse:
    """A page of the inbox as JSON: newest first below `before`, one row per group, with the stream state read first.

    `group=<key>`: that group's members instead; with `row=1`, that group's row alone (its figures, refreshed).
    """
    topic, unread_only = _filters(request)
    group = request.GET.get("group")
    try:
        before = int(request.GET["before"]) if request.GET.get("before") else None
        limit = max(1, min(int(request.GET.get("limit", PAGE_SIZE)), MAX_PAGE_SIZE))
    except ValueError:
        return JsonResponse({"code": "invalid_field", "message": "before and limit must be integers"}, status=400)
    state = selectors.stream_state(_uid(request))
    upper = state.head_seq + 1 if before is None else min(before, state.head_seq + 1)
    if group is not None and request.GET.get("row") != "1":
        members = selectors.inbox(_uid(request), before=upper, limit=limit, unread_only=unread_only, topic=topic, group_key=group)
        items, count = [item(n) for n in members], len(members)
    else:
        rows = selectors.inbox_rows(_uid(request), before=upper, limit=limit, unread_only=unread_only, topic=topic, group_key=group)
        items, count = [item(r.notification, r.group) for r in rows], len(rows)
    body = {"items": items, "head_seq": state.head_seq, "unread": state.unread, "more": count == limit}
    return HttpResponse(protocol.encode(body), content_type="application/json")


@require_POST
@login_required
def inbox_read(request: HttpRequest) -> HttpResponse:
    """Mark one, some or all read, or a group's members (`group`: its key); a form post (redirects back) or a fetch (answers JSON)."""
    everything = request.POST.get("all") in {"1", "true", "on"}
    try:
        ids = [int(i) for i in request.POST.getlist("id")]
    except ValueError:
        ids = []
    if request.POST.get("group"):
        members = selectors.inbox(_uid(request), unread_only=True, limit=rules.MAX_READ_IDS, group_key=request.POST["group"])
        ids = [n.id for n in members] or ids
    if not everything and not ids:
        if _wants_json(request):
            return JsonResponse({"code": "invalid_field", "message": "send id or all"}, status=400)
        messages.error(request, "Nothing to mark read.")
        return redirect("inbox")
    result = services.mark_read(user_id=_uid(request), ids=ids, everything=everything)
    if _wants_json(request):
        return JsonResponse({"ids": result.changed_ids, "up_to_seq": result.up_to_seq, "unread": result.unread})
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = reverse("inbox")
    return redirect(target)


@require_GET
@staff_required
def ops_data(request: HttpRequest) -> HttpResponse:
    return HttpResponse(protocol.encode(ops.snapshot().as_dict()), content_type="application/json")
