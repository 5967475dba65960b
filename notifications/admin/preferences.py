"""What users chose for their away channels: per category and channel, and their quiet hours.

View-only: a user's choice is theirs to make (/preferences/, the one-click unsubscribe);
the operator sees it here, beside the defaults (ChannelDefault) it overrides.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from ..models import ChannelPreference, QuietHours
from .listing import CheapListMixin


class _ViewOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ChannelPreference)
class ChannelPreferenceAdmin(CheapListMixin, _ViewOnly):
    list_display = ("user", "channel", "category", "enabled")
    list_filter = ("channel", "enabled")
    search_fields = ("=user__username", "category")
    list_select_related = ("user",)
    ordering = ("-id",)


@admin.register(QuietHours)
class QuietHoursAdmin(CheapListMixin, _ViewOnly):
    list_display = ("user", "start", "end", "time_zone")
    search_fields = ("=user__username",)
    list_select_related = ("user",)
    ordering = ("user_id",)
