"""Management commands in process: `notify` follows the same rules as the API and the compose form."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from notifications.models import Notification

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


def test_notify_sends_to_active_users_by_name(make_user: Any) -> None:
    ann = make_user("ann")
    out = StringIO()
    call_command("notify", "ann", "--title", "hi", "--url", "/builds/1", stdout=out)
    assert out.getvalue() == f"user {ann.id} seq 1 id {Notification.objects.get().id}\n"


def test_notify_refuses_an_inactive_users_name(make_user: Any) -> None:
    make_user("ann")
    make_user("gone", is_active=False)
    with pytest.raises(CommandError, match="no such active user: gone"):
        call_command("notify", "ann", "gone", "--title", "hi")
    assert not Notification.objects.exists()


@pytest.mark.parametrize("url", ["/\t/evil.example/phish", "javascript:alert(1)", "//evil.example"])
def test_notify_refuses_an_unsafe_url(make_user: Any, url: str) -> None:
    make_user("ann")
    with pytest.raises(CommandError, match="--url"):
        call_command("notify", "ann", "--title", "hi", "--url", url)
    assert not Notification.objects.exists()
