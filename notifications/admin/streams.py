"""The per-user view: where each user's stream stands, and who is connected right now."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from .. import presence, selectors, users
from ..models import UserStream
from .listing import CheapListMixin


class StreamChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        """One presence snapshot for the page (one Redis read), not one per row."""
        super().get_results(request)
        connected: dict[users.UserId, int] = {}
        for report in presence.reports():
            for user_id, count in report.users.items():
                connected[user_id] = connected.get(user_id, 0) + count
        for stream in self.result_list:
            stream.connections_now = connected.get(stream.user_id, 0)


@admin.register(UserStream)
class UserStreamAdmin(CheapListMixin, admin.ModelAdmin):
    list_display = ("user", "head_seq", "unread", "unseen", "delivered_seq", "undelivered", "oldest_undelivered", "connections")
    search_fields = (f"=user__{users.login_field()}",)
    list_select_related = ("user",)
    ordering = ("-user_id",)
    fields = (
        "user", "head_seq", "unread", "unseen", "seen_seq", "delivered_seq", "delivered_at", "undelivered", "oldest_undelivered",
        "connections", "pruned_seq", "notifications",
    )  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[UserStream]:
        return (
            super()
            .get_queryset(request)
            .annotate(undelivered_count=F("head_seq") - F("delivered_seq"), oldest_undelivered_at=selectors.oldest_undelivered_at())
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return StreamChangeList

    # A stream is the services' bookkeeping: seen here, changed only by publishing, reading and acking.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UserStream | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UserStream | None = None) -> bool:
        return False

    @admin.display(description="unacked seqs")
    def undelivered(self, obj: UserStream) -> SafeString:
        """Seqs above the delivered cursor: notifications and inbox events alike (the link lists the notifications)."""
        count = int(getattr(obj, "undelivered_count", 0))
        return self._link(obj, str(count), delivered="no") if count else SafeString("0")

    @admin.display(description="oldest undelivered")
    def oldest_undelivered(self, obj: UserStream) -> str:
        oldest = getattr(obj, "oldest_undelivered_at", None)
        return f"{timesince(oldest, timezone.now(), depth=1)} ago" if oldest else "—"

    @admin.display(description="connections now")
    def connections(self, obj: UserStream) -> int:
        """Open sockets on every server process (presence reports, refreshed every few seconds)."""
        now = getattr(obj, "connections_now", None)
        return int(now) if now is not None else presence.connections_for(obj.user_id)

    @admin.display(description="notifications")
    def notifications(self, obj: UserStream) -> SafeString:
        return self._link(obj, "All of this user's notifications")

    @staticmethod
    def _link(obj: UserStream, text: str, **filters: str) -> SafeString:
        query = urlencode({"recipient__id__exact": obj.user_id, **filters})
        return format_html('<a href="{}?{}">{}</a>', reverse("admin:notifications_notification_changelist"), query, text)
