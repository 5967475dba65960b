"""Webhooks: the endpoints (turn off, on, remove), their outbox and the log of every attempt, view-only.

Endpoints are added over the API (POST /api/v1/webhook-endpoints), whose answer
is the one place their secret is shown; the admin never shows it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .. import services
from ..models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from .listing import CheapListMixin


class ViewOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # removal keeps the log: the "remove" action; retention deletes (manage.py prune)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ViewOnly):
    list_display = ("id", "url", "event_list", "disabled", "created_at", "created_by", "removed_at")
    list_filter = ("disabled", ("removed_at", admin.EmptyFieldListFilter))
    search_fields = ("url",)
    list_select_related = ("created_by",)
    ordering = ("-id",)
    fields = readonly_fields = ("url", "events", "disabled", "created_at", "created_by", "removed_at")
    actions = ("disable", "enable", "remove")

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    def has_change_permission(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> bool:
        """`change` is what the actions need; an endpoint's own page is view-only."""
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Turn off selected endpoints (what waits for them is cancelled)", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        done = services.webhooks.set_disabled(queryset.values_list("pk", flat=True), disabled=True)
        self.message_user(request, f"Turned off {done} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Turn on selected endpoints", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        done = services.webhooks.set_disabled(queryset.values_list("pk", flat=True), disabled=False)
        self.message_user(request, f"Turned on {done} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Remove selected endpoints (their log stays)", permissions=["change"])
    def remove(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        ids = list(queryset.filter(removed_at__isnull=True).values_list("pk", flat=True))
        for endpoint_id in ids:
            services.webhooks.remove_endpoint(endpoint_id)
        self.message_user(request, f"Removed {len(ids)} endpoint(s).", messages.SUCCESS)


@admin.register(WebhookMessage)
class WebhookMessageAdmin(CheapListMixin, ViewOnly):
    list_display = ("id", "event_type", "endpoint", "state", "attempts", "next_attempt_at", "created_at", "finished_at")
    list_filter = ("state", "event_type")
    search_fields = ("=id",)
    list_select_related = ("endpoint",)
    raw_id_fields = ("endpoint",)
    ordering = ("-created_at",)
    fields = readonly_fields = ("id", "endpoint", "event_type", "state", "attempts", "next_attempt_at", "created_at", "finished_at", "body")
    actions = ("retry",)

    def has_change_permission(self, request: HttpRequest, obj: WebhookMessage | None = None) -> bool:
        return obj is None and super().has_change_permission(request)

    @admin.action(description="Retry selected given-up messages now (same webhook-id)", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[WebhookMessage]) -> None:
        done = services.webhooks.retry_now(queryset.values_list("pk", flat=True))
        self.message_user(request, f"{done} message(s) will be sent again.", messages.SUCCESS)


class AnswerFilter(admin.SimpleListFilter):
    title = "answer"
    parameter_name = "answer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("2xx", "2xx (delivered)"), ("other", "Another status"), ("none", "No answer (refused, timeout, network)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "2xx":
            return queryset.filter(status_code__gte=200, status_code__lt=300)
        if self.value() == "other":
            return queryset.filter(status_code__isnull=False).exclude(status_code__gte=200, status_code__lt=300)
        if self.value() == "none":
            return queryset.filter(status_code__isnull=True)
        return None


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(CheapListMixin, ViewOnly):
    list_display = ("at", "message", "endpoint", "status_code", "error", "duration_ms", "response")
    list_filter = (AnswerFilter,)
    search_fields = ("=message__id",)
    list_select_related = ("message__endpoint",)
    ordering = ("-id",)
    fields = readonly_fields = ("message", "endpoint", "at", "status_code", "error", "duration_ms", "response")

    @admin.display(description="endpoint")
    def endpoint(self, obj: WebhookAttempt) -> WebhookEndpoint:
        return obj.message.endpoint

    def has_change_permission(self, request: HttpRequest, obj: WebhookAttempt | None = None) -> bool:
        return False
