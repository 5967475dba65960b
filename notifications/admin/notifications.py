"""Notifications in the admin: the big list, its actions, and the Compose page.

A notification is immutable once published (devices already hold it), so its
page is view-only; read state, redelivery and deletion are actions, and every
one of them is a service call that keeps sequences, unread counters and every
device in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.timezone import localtime

from .. import services, users
from ..errors import ServiceError
from ..forms import ComposeForm
from ..models import Notification
from ..selectors import away_deliveries, delivered, undelivered
from .listing import CheapDateHierarchyChangeList, CheapListMixin

# One action handles at most this many rows: selecting "all 1,000,000" must not load them all, push them all,
# or write a log entry for each. A bigger catch-up is the clients' resume; a bigger deletion is retention's (prune).
ACTION_MAX = 10_000
DELETE_LIST_MAX = 50  # the delete confirmation names this many, then says how many more


class _NullFilter(admin.SimpleListFilter):
    """yes/no on whether a timestamp is set; both answers are served by an index (see models.py)."""

    field = ""
    labels = ("yes", "no")

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", self.labels[0]), ("no", self.labels[1])]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.field}__isnull": self.value() == "no"})
        return None


class DeliveredFilter(admin.SimpleListFilter):
    title = "delivered"
    parameter_name = "delivered"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Delivered"), ("no", "Undelivered")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() in ("yes", "no"):
            return queryset.filter(delivered() if self.value() == "yes" else undelivered())
        return None


class ReadFilter(_NullFilter):
    title = "read"
    parameter_name = "read"
    field = "read_at"
    labels = ("Read", "Unread")


@admin.register(Notification)
class NotificationAdmin(CheapListMixin, admin.ModelAdmin):
    list_display = ("recipient", "seq", "title", "topic", "level", "created_at", "delivered", "read")
    list_display_links = ("seq", "title")
    list_filter = (DeliveredFilter, ReadFilter, "topic", "level", "created_at")
    search_fields = (f"=recipient__{users.login_field()}", "title")  # shown as the search box; see get_search_results
    search_help_text = "An exact username finds that user's notifications; anything else is looked for in titles."
    date_hierarchy = "created_at"
    # Newest first; every filter has an index ending in (created_at, id): see the migration 0002.
    ordering = ("-created_at", "-id")
    list_select_related = ("recipient", "topic")
    actions = ("delete_selected", "mark_read", "mark_unread", "redeliver")
    fields = (
        "recipient", "seq", "topic", "kind", "title", "body", "data", "url", "level", "actor",
        "created_at", "delivered", "read_at", "archived_at", "snoozed_until", "expires_at", "idempotency_key", "sent_away",
    )  # fmt: skip
    readonly_fields = fields

    # --- the list ---------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return CheapDateHierarchyChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).annotate(is_delivered=delivered())

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Notification], search_term: str
    ) -> tuple[QuerySet[Notification], bool]:
        """An exact username finds that user's notifications (by index); anything else is looked for in titles.

        Not Django's default (username OR title over a join), which scans every row for every search.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        user_id = get_user_model()._default_manager.filter(**{users.login_field(): term}).values_list("pk", flat=True).first()
        if user_id is not None:
            return queryset.filter(recipient_id=user_id), False
        return queryset.filter(title__icontains=term), False

    @admin.display(boolean=True, description="delivered")
    def delivered(self, obj: Notification) -> bool:
        return bool(getattr(obj, "is_delivered", False))

    @admin.display(boolean=True, ordering="read_at", description="read")
    def read(self, obj: Notification) -> bool:
        return obj.read_at is not None

    @admin.display(description="email and push")
    def sent_away(self, obj: Notification) -> str:
        done = away_deliveries(obj.pk)
        if not done:
            return "Not sent away (yet): nothing is sent while a device acks it or it is read in time."
        return "; ".join(f"{d.get_channel_display()} {d.state} at {localtime(d.at):%Y-%m-%d %H:%M:%S}" for d in done)

    # --- permissions: published content is not edited ----------------------------

    def has_change_permission(self, request: HttpRequest, obj: Notification | None = None) -> bool:
        """The list's actions need `change`; a notification's own page is view-only."""
        return obj is None and super().has_change_permission(request)

    # --- actions ------------------------------------------------------------------

    @admin.action(description="Mark selected notifications as read", permissions=["change"])
    def mark_read(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        if (ids := self._selected_ids(request, queryset)) is not None:
            changed = services.mark_read_ids(ids)
            self.message_user(request, f"Marked {changed} notification(s) read; their recipients' devices were told.", messages.SUCCESS)

    @admin.action(description="Mark selected notifications as unread", permissions=["change"])
    def mark_unread(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        if (ids := self._selected_ids(request, queryset)) is not None:
            changed = services.mark_unread_ids(ids)
            self.message_user(request, f"Marked {changed} notification(s) unread; their recipients' devices were told.", messages.SUCCESS)

    @admin.action(description="Redeliver now to the recipients' open sockets", permissions=["change"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        if (ids := self._selected_ids(request, queryset)) is not None:
            pushed = services.redeliver(ids)
            self.message_user(request, f"Pushed {pushed} notification(s) again to their recipients' open sockets.", messages.SUCCESS)

    @admin.action(description=delete_selected.short_description, permissions=["delete"])  # type: ignore[attr-defined]
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[Notification]) -> HttpResponse | None:
        """Django's own (confirmation page, log entries), bounded; the rows go through delete_queryset below."""
        if self._selected_ids(request, queryset) is None:
            return None
        return delete_selected(self, request, queryset)

    def _selected_ids(self, request: HttpRequest, queryset: QuerySet[Notification]) -> list[int] | None:
        """The selection's ids, or None (and a message) when it is too big for one action."""
        ids = list(queryset.order_by().values_list("id", flat=True)[: ACTION_MAX + 1])
        if len(ids) > ACTION_MAX:
            self.message_user(request, f"One action handles at most {ACTION_MAX:,} notifications; narrow the selection.", messages.ERROR)
            return None
        return ids

    # Deletion goes through the service, which keeps every unread counter exact.

    def delete_model(self, request: HttpRequest, obj: Notification) -> None:
        services.delete_notifications([obj.id])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        services.delete_notifications(list(queryset.order_by().values_list("id", flat=True)))

    def get_deleted_objects(
        self, objs: Sequence[Notification] | QuerySet[Notification], request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """Nothing hangs off a notification: name the first few, count the rest (never one line per row of a million)."""
        count = objs.count() if isinstance(objs, QuerySet) else len(objs)
        shown: list[Any] = [
            format_html('Notification: <a href="{}">{}</a>', reverse("admin:notifications_notification_change", args=[n.pk]), n)
            for n in objs[:DELETE_LIST_MAX]
        ]
        if count > DELETE_LIST_MAX:
            shown.append(f"… and {count - DELETE_LIST_MAX:,} more")
        perms_needed = set() if self.has_delete_permission(request) else {str(self.opts.verbose_name)}
        return shown, {str(self.opts.verbose_name_plural): count}, perms_needed, []

    # --- Compose ------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        compose = path("compose/", self.admin_site.admin_view(self.compose_view), name="notifications_notification_compose")
        return [compose, *super().get_urls()]

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Adding a notification is composing one: rows are only ever written by the publish services."""
        query = request.META.get("QUERY_STRING", "")
        return HttpResponseRedirect(reverse("admin:notifications_notification_compose") + (f"?{query}" if query else ""))

    def compose_view(self, request: HttpRequest) -> HttpResponse:
        """The dashboard's ComposeForm, publishing through the same services as the API."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ComposeForm(request.POST) if request.method == "POST" else ComposeForm(initial=request.GET.dict())
        if request.method == "POST" and form.is_valid():
            try:
                result = form.publish(actor_id=request.user.pk)
            except ServiceError as e:
                form.add_error(None, e.message)
            else:
                sent = len(result.deliveries)
                level = messages.SUCCESS if sent else messages.WARNING
                self.message_user(request, f"Sent “{form.cleaned_data['title']}” to {sent} recipient(s).", level)
                return HttpResponseRedirect(reverse("admin:notifications_notification_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Compose a notification",
            "subtitle": None,
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
            "has_view_permission": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/notifications/notification/compose.html", context)
