"""The dashboard's forms: compose (shared with the admin's Compose page), preferences, and the rate-limited login forms."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from . import rate_limits, selectors, services
from .errors import ServiceError
from .fields import CONTENT_NAMES, MAX_ACTIONS, MAX_GROUP_KEY, Content
from .models import Channel, Level, Topic
from .rules import MAX_URL, UnsafeUrl, safe_url
from .schemas import QuietIO


class ComposeForm(forms.Form):
    AUDIENCES = [("users", "Users"), ("topic", "Topic subscribers"), ("everyone", "Everyone")]

    audience = forms.ChoiceField(choices=AUDIENCES, initial="users")
    usernames = forms.CharField(required=False, help_text="Comma-separated usernames")
    topic = forms.ModelChoiceField(queryset=Topic.objects.order_by("slug"), required=False, to_field_name="slug")
    title = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False, max_length=4000)
    url = forms.CharField(
        required=False, max_length=MAX_URL, label="Link (URL)", help_text="http(s) URL or a path starting with a single /"
    )
    level = forms.ChoiceField(choices=Level.choices, initial=Level.INFO)
    actions = forms.JSONField(
        required=False,
        label="Actions (JSON)",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": '[{"id": "approve", "label": "Approve", "style": "primary"}]'}),
        help_text=f"Up to {MAX_ACTIONS} buttons: id (a slug), label, style (primary, secondary or danger), and a url to make one a link.",
    )
    group_key = forms.CharField(
        required=False, max_length=MAX_GROUP_KEY, label="Group key", help_text="A user's notifications with the same key show as one row."
    )

    def clean_url(self) -> str:
        try:
            return safe_url(self.cleaned_data.get("url", ""))
        except UnsafeUrl as e:
            raise forms.ValidationError(f"Only http(s) URLs or paths starting with a single / are allowed: this one {e}.") from e

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        audience = data.get("audience")
        if audience == "users":
            names = [n.strip() for n in (data.get("usernames") or "").split(",") if n.strip()]
            if not names:
                self.add_error("usernames", "Name at least one user.")
            else:
                found = selectors.active_user_ids(names)
                missing = [n for n in names if n not in found]
                if missing:
                    self.add_error("usernames", f"No such user: {', '.join(missing)}")
                data["recipient_ids"] = [found[n] for n in names if n in found]
        elif audience == "topic" and not data.get("topic"):
            self.add_error("topic", "Choose a topic.")
        self._check_content(data)
        return data

    def _check_content(self, data: dict[str, Any]) -> None:
        """The API's rules for every content field (fields.ContentFields), each error beside its field."""
        values = {name: data[name] for name in CONTENT_NAMES if name in self.fields and data.get(name) is not None}
        try:
            data["content"] = Content.checked(**values)
        except ServiceError as e:
            for path, message in e.fields.items():
                name, _, rest = path.partition(".")
                if name in self.fields and name not in self.errors:
                    self.add_error(name, f"{rest}: {message}" if rest else message)
                elif name not in self.fields:
                    self.add_error(None, f"{path}: {message}")

    def publish(self, *, actor_id: int | None) -> services.PublishResult:
        """Send what the valid form describes, through the same services as the API."""
        data = self.cleaned_data
        topic: Topic | None = data.get("topic") if data["audience"] == "topic" else None
        content = data["content"].model_copy(update={"actor_id": actor_id, "topic_id": topic.id if topic else None})
        if topic is not None:
            return services.publish_to_topic(topic=topic, content=content)
        if data["audience"] == "everyone":
            return services.publish_to_everyone(content=content)
        return services.notify(recipient_ids=data["recipient_ids"], content=content)


class PreferencesForm(forms.Form):
    """The preferences page: a select per channel and category (default / on / off), and quiet hours checked
    by the same rule as the API's (schemas.QuietIO). A field in error keeps what the user typed."""

    CHANNEL_LABELS = {Channel.EMAIL: "Email", Channel.WEBPUSH: "Browser push"}
    QUIET_FIELDS = {"start": "quiet_start", "end": "quiet_end", "time_zone": "time_zone"}  # QuietIO's field -> the page's

    quiet_start = forms.CharField(required=False, label="From", widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    quiet_end = forms.CharField(required=False, label="to", widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"))
    time_zone = forms.CharField(
        required=False, max_length=64, label="Time zone", widget=forms.TextInput(attrs={"placeholder": "e.g. Europe/Paris"})
    )

    def __init__(self, *args: Any, categories: list[tuple[str, str]], fallbacks: dict[tuple[str, str], bool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.categories = categories
        for category, label in categories:
            for channel in Channel.values:
                default = "on" if fallbacks[(channel, category)] else "off"
                self.fields[self.select_name(channel, category)] = forms.ChoiceField(
                    required=False,
                    label=f"{self.CHANNEL_LABELS[Channel(channel)]} for {label}",
                    choices=[("", f"Default ({default})"), ("on", "On"), ("off", "Off")],
                    widget=forms.Select(attrs={"aria-label": f"{self.CHANNEL_LABELS[Channel(channel)]} for {label}"}),
                )

    @staticmethod
    def select_name(channel: str, category: str) -> str:
        return f"{channel}|{category}"

    @classmethod
    def initial_from(cls, choices: list[services.Choice], quiet: services.Quiet | None) -> dict[str, Any]:
        initial: dict[str, Any] = {cls.select_name(c.channel, c.category): "on" if c.enabled else "off" for c in choices}
        if quiet is not None:
            initial.update(quiet_start=quiet.start, quiet_end=quiet.end, time_zone=quiet.time_zone)
        return initial

    def quiet_fields(self) -> list[forms.BoundField]:
        return [self[f] for f in self.QUIET_FIELDS.values()]

    def rows(self) -> list[tuple[str, str, list[tuple[str, forms.BoundField]]]]:
        """(category, label, [(channel's label, its select)]), in the page's order."""
        return [
            (c, label, [(self.CHANNEL_LABELS[Channel(ch)], self[self.select_name(ch, c)]) for ch in Channel.values])
            for c, label in self.categories
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end, zone = (data.get(f, "").strip() for f in ("quiet_start", "quiet_end", "time_zone"))
        data["quiet"] = None
        if not start and not end:
            if zone:
                self.add_error("time_zone", "A time zone is kept only with quiet hours: fill in From and to, or clear it.")
            return data
        try:
            quiet = QuietIO.model_validate({"time_zone": zone or "UTC", "start": start, "end": end})
        except ValidationError as exc:
            for error in exc.errors():
                field = self.QUIET_FIELDS.get(str(error["loc"][0]) if error["loc"] else "end", "quiet_end")
                self.add_error(field, _message(error))
            return data
        data["quiet"] = services.Quiet(quiet.time_zone, quiet.start, quiet.end)
        return data

    def choices(self) -> list[services.Choice]:
        return [
            services.Choice(channel, category, value == "on")
            for category, _ in self.categories
            for channel in Channel.values
            if (value := self.cleaned_data.get(self.select_name(channel, category))) in {"on", "off"}
        ]


def _message(error: ErrorDetails) -> str:
    """A pydantic error as a person reads it beside a field."""
    if error["type"].startswith("time"):
        return "Enter a time such as 22:00."
    if error["type"] == "value_error":
        text = str(error.get("ctx", {}).get("error", error["msg"]))
        return f"{text[:1].upper()}{text[1:]}."
    return error["msg"]


class RateLimitedLogin(AuthenticationForm):
    """Django's login form, refusing an attempt over the login limits before the password is checked.

    `retry_after` is set when it refused, for the view's 429 and Retry-After.
    """

    retry_after: int | None = None

    def clean(self) -> dict[str, Any]:
        assert self.request is not None  # LoginView always passes it
        self.retry_after = rate_limits.login_attempt(self.request, str(self.data.get("username", "")))
        if self.retry_after is not None:
            raise forms.ValidationError(f"Too many login attempts. Try again in {self.retry_after} seconds.", code="rate_limited")
        return super().clean()


class RateLimitedAdminLogin(RateLimitedLogin, AdminAuthenticationForm):
    """The admin's login form (staff only), under the same limits and counts as the dashboard's."""
