"""API tokens: issued through auth.issue_token (the secret is shown once), revoked through auth.revoke_token."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .. import auth, users
from ..models import ApiToken, Scope
from .listing import CheapListMixin

# The secret of a token issued by this request, for response_add to show once; never stored, never logged.
_issued: WeakKeyDictionary[HttpRequest, str] = WeakKeyDictionary()


class ApiTokenAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.PUBLISH])

    class Meta:
        model = ApiToken
        fields = ("user", "name")


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() in ("active", "revoked"):
            return queryset.filter(revoked_at__isnull=self.value() == "active")
        return None


@admin.register(ApiToken)
class ApiTokenAdmin(CheapListMixin, admin.ModelAdmin):
    list_display = ("token", "name", "user", "scope_list", "created_at", "last_used_at", "revoked_at")
    list_filter = (RevokedFilter,)
    search_fields = ("prefix", "name", f"=user__{users.login_field()}")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("-created_at",)
    actions = ("revoke",)
    shown_fields = ("user", "name", "token", "scope_list", "created_at", "last_used_at", "revoked_at")

    @admin.display(description="token", ordering="prefix")
    def token(self, obj: ApiToken) -> str:
        """Only the prefix is kept in the clear; the rest of the secret was shown once, when issued."""
        return f"{auth.TOKEN_PREFIX}{obj.prefix}_…"

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiToken) -> str:
        return ", ".join(obj.scopes)

    # --- forms: issue on add, view-only afterwards (the digest is never shown) ----

    def get_form(
        self, request: HttpRequest, obj: ApiToken | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[ApiToken]]:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:  # type: ignore[override]
        return ["user", "name", "scopes"] if obj is None else list(self.shown_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> tuple[str, ...]:
        return () if obj is None else self.shown_fields

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        """`change` is what revoking needs; a token's own page is view-only."""
        return obj is None and super().has_change_permission(request)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm[ApiToken], change: bool) -> None:
        data = form.cleaned_data
        issued = auth.issue_token(user=data["user"], scopes=data["scopes"], name=data.get("name", ""))
        for field in ("pk", "prefix", "digest", "scopes", "created_at"):
            setattr(obj, field, getattr(issued.token, field))
        obj._state.adding = False
        _issued[request] = issued.secret

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        """Show the secret once, on this response only (not in a message: those travel in cookies)."""
        secret = _issued.pop(request, None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "title": "Token issued", "opts": self.opts, "token": obj, "secret": secret}
        response = TemplateResponse(request, "admin/notifications/apitoken/issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected tokens (open sockets using them close at the next heartbeat)", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        tokens = list(queryset.filter(revoked_at__isnull=True))
        for token in tokens:
            auth.revoke_token(token)
        self.message_user(request, f"Revoked {len(tokens)} token(s).", messages.SUCCESS)
