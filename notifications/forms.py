"""The compose form, shared by the dashboard's /compose and the admin's Compose page."""

from __future__ import annotations

from typing import Any

from django import forms

from . import selectors, services
from .models import Level, Topic
from .rules import MAX_URL, UnsafeUrl, safe_url


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
        return data

    def publish(self, *, actor_id: int | None) -> services.PublishResult:
        """Send what the valid form describes, through the same services as the API."""
        data = self.cleaned_data
        topic: Topic | None = data.get("topic") if data["audience"] == "topic" else None
        content = services.Content(
            title=data["title"], body=data.get("body", ""), url=data.get("url", ""), level=data["level"],
            actor_id=actor_id, topic_id=topic.id if topic else None,
        )  # fmt: skip
        if topic is not None:
            return services.publish_to_topic(topic=topic, content=content)
        if data["audience"] == "everyone":
            return services.publish_to_everyone(content=content)
        return services.notify(recipient_ids=data["recipient_ids"], content=content)
