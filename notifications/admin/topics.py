"""Topics (with their subscriber counts and a way to notify them) and subscriptions."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from .. import users
from ..models import Subscription, Topic
from .listing import CheapListMixin, count_per_row


def _subscribers(**conditions: Any) -> Coalesce:
    """Counted from the (topic, user) unique index."""
    return count_per_row(Subscription.objects.filter(topic=OuterRef("pk"), **conditions), by="topic")


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ("slug", "title", "public", "subscribers", "muted", "created_at")
    list_filter = ("public",)
    search_fields = ("slug", "title")
    ordering = ("slug",)
    prepopulated_fields = {"slug": ("title",)}
    actions = ("send_to_subscribers",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Topic]:
        return super().get_queryset(request).annotate(subscriber_count=_subscribers(muted=False), muted_count=_subscribers(muted=True))

    @admin.display(ordering="subscriber_count", description="subscribers")
    def subscribers(self, obj: Topic) -> int:
        """Who a publish to this topic reaches now (muted subscribers are not counted)."""
        return int(getattr(obj, "subscriber_count", 0))

    @admin.display(ordering="muted_count", description="muted")
    def muted(self, obj: Topic) -> int:
        return int(getattr(obj, "muted_count", 0))

    def has_compose_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("notifications.add_notification"))

    @admin.action(description="Send a notification to the subscribers of the selected topic", permissions=["compose"])
    def send_to_subscribers(self, request: HttpRequest, queryset: QuerySet[Topic]) -> HttpResponse | None:
        """Open the Compose page addressed to this topic (one topic at a time: each publish is one topic's)."""
        slugs = list(queryset.values_list("slug", flat=True)[:2])
        if len(slugs) != 1:
            self.message_user(request, "Choose exactly one topic to send to.", messages.WARNING)
            return None
        query = urlencode({"audience": "topic", "topic": slugs[0]})
        return HttpResponseRedirect(f"{reverse('admin:notifications_notification_compose')}?{query}")


@admin.register(Subscription)
class SubscriptionAdmin(CheapListMixin, admin.ModelAdmin):
    list_display = ("user", "topic", "muted", "created_at")
    list_filter = ("muted", "topic")
    search_fields = (f"=user__{users.login_field()}", "topic__slug")
    list_select_related = ("user", "topic")
    raw_id_fields = ("user",)  # a select of every user does not render with a million users
    ordering = ("-id",)
