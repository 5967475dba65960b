"""Away channels: the operator's defaults per category (on/off, delay), and what was sent and to where."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .. import users
from ..models import AwayDelivery, ChannelDefault, PushSubscription
from .listing import CheapListMixin


@admin.register(ChannelDefault)
class ChannelDefaultAdmin(admin.ModelAdmin):
    list_display = ("channel", "category", "enabled", "delay_seconds")
    list_filter = ("channel", "enabled")
    search_fields = ("category",)
    ordering = ("channel", "category")


@admin.register(PushSubscription)
class PushSubscriptionAdmin(CheapListMixin, admin.ModelAdmin):
    list_display = ("user", "endpoint", "created_at")
    search_fields = (f"=user__{users.login_field()}",)
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("-id",)
    readonly_fields = ("user", "endpoint", "p256dh", "auth", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # only a browser can subscribe itself


@admin.register(AwayDelivery)
class AwayDeliveryAdmin(CheapListMixin, admin.ModelAdmin):
    list_display = ("notification", "channel", "state", "at")
    list_filter = ("channel", "state")
    list_select_related = ("notification__recipient",)  # each row names its notification, and that its recipient
    raw_id_fields = ("notification",)
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AwayDelivery | None = None) -> bool:
        return False
