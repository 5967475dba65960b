"""Email digests through a real SMTP server (aiosmtpd on loopback): due rule, digest window, preferences,
one-click unsubscribe (RFC 8058), SMTP down and back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from notifications import services
from notifications.changes import Change
from notifications.models import AwayDelivery, Channel, ChannelPreference, Notification, Topic
from tests.away import SmtpServer, away_settings, text_of, use_smtp
from tests.conftest import free_port

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


@pytest.fixture
def smtp(settings: Any) -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    use_smtp(settings, server.port)
    settings.AWAY = away_settings()
    yield server
    server.stop()


def send(user: Any, title: str, **content: Any) -> services.Delivery:
    return services.notify(recipient_ids=[user.id], content=services.Content(title=title, **content)).deliveries[0]


def emailed() -> Any:
    return services.deliver_due(channel=Channel.EMAIL, now=timezone.now() + timedelta(seconds=1))


def test_one_digest_per_user_with_only_what_no_device_acked_or_read(smtp: SmtpServer, make_user: Any) -> None:
    alice, bob = make_user("alice", email="alice@example.com"), make_user("bob", email="bob@example.com")
    nobody = make_user("no-address")
    acked = send(alice, "acked")
    read = send(alice, "read")
    send(alice, "third", url="/builds/3")
    send(alice, "fourth", url="https://ci.example.com/4")
    send(bob, "for bob")
    send(nobody, "no address, no email")
    services.ack(user_id=alice.id, seq=acked.seq)
    services.mark_read(user_id=alice.id, ids=[read.id])

    emailed()

    by_to = {m["To"]: m for m in smtp.messages}
    assert set(by_to) == {"alice@example.com", "bob@example.com"}
    digest = by_to["alice@example.com"]
    assert digest["Subject"] == "2 new notifications: fourth"
    text = text_of(digest)
    assert text.index("fourth") < text.index("third"), "newest first"
    assert "acked" not in text and "* read" not in text
    assert "http://testserver/builds/3" in text and "https://ci.example.com/4" in text
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert digest.get_body(preferencelist=("html",)) is not None

    emailed()
    assert len(smtp.messages) == 2, "each notification is emailed at most once"


def test_the_window_gathers_what_comes_next_into_one_later_digest(smtp: SmtpServer, make_user: Any) -> None:
    alice = make_user("alice", email="alice@example.com")
    send(alice, "first")
    emailed()
    send(alice, "second")
    send(alice, "third")
    emailed()
    assert len(smtp.messages) == 1, "a second digest waits for the window's end"
    services.deliver_due(channel=Channel.EMAIL, now=timezone.now() + timedelta(seconds=301))
    assert [m["Subject"] for m in smtp.messages] == ["first", "2 new notifications: third"]


def test_not_before_the_delay_and_not_once_acked(smtp: SmtpServer, make_user: Any, settings: Any) -> None:
    settings.AWAY = away_settings(EMAIL_DELAY_SECONDS=600)
    alice = make_user("alice", email="alice@example.com")
    first = send(alice, "seen in time")
    emailed()
    assert smtp.messages == []
    services.ack(user_id=alice.id, seq=first.seq)
    services.deliver_due(channel=Channel.EMAIL, now=timezone.now() + timedelta(seconds=601))
    assert smtp.messages == []


def test_a_category_turned_off_is_not_emailed(smtp: SmtpServer, make_user: Any) -> None:
    alice = make_user("alice", email="alice@example.com")
    deploys = Topic.objects.create(slug="deploys", title="Deploys")
    services.set_preferences(user_id=alice.id, choices=[services.Choice(Channel.EMAIL, "topic:deploys", False)], quiet=None)
    send(alice, "deploy done", topic_id=deploys.id)
    send(alice, "build failed", kind="build.failed")
    emailed()
    [digest] = smtp.messages
    assert digest["Subject"] == "build failed"


def test_one_click_unsubscribe_turns_that_email_off_and_a_bad_signature_is_refused(smtp: SmtpServer, make_user: Any) -> None:
    alice = make_user("alice", email="alice@example.com")
    send(alice, "build failed", kind="build.failed")
    emailed()
    url = urlsplit("".join(str(smtp.messages[0]["List-Unsubscribe"]).split()).strip("<>"))
    client = Client()  # no session, no CSRF token: as a mail client posts it
    tampered = client.post(f"{url.path}?{url.query[:-2]}xx", "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert tampered.status_code == 400
    assert not ChannelPreference.objects.filter(user_id=alice.id).exists()
    assert client.get(f"{url.path}?{url.query}").status_code == 200
    assert not ChannelPreference.objects.filter(user_id=alice.id).exists(), "a GET (a link scanner) changes nothing"

    response = client.post(f"{url.path}?{url.query}", "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert ChannelPreference.objects.get(user_id=alice.id).category == "kind:build.failed"
    send(alice, "build failed again", kind="build.failed")
    services.deliver_due(channel=Channel.EMAIL, now=timezone.now() + timedelta(seconds=400))
    assert len(smtp.messages) == 1


def test_smtp_down_is_retried_later_and_sent_once_when_it_returns(make_user: Any, settings: Any) -> None:
    port = free_port()
    use_smtp(settings, port)
    settings.AWAY = away_settings()
    alice = make_user("alice", email="alice@example.com")
    send(alice, "while the mail server is down")
    report = emailed()
    assert report.failures == 1 and not AwayDelivery.objects.exists()
    server = SmtpServer(port).start()
    try:
        emailed()
        assert server.messages == [], "held: backing off"
        services.deliver_due(channel=Channel.EMAIL, now=timezone.now() + timedelta(seconds=10))
        services.deliver_due(channel=Channel.EMAIL, now=timezone.now() + timedelta(seconds=400))
        assert [m["Subject"] for m in server.messages] == ["while the mail server is down"]
    finally:
        server.stop()


def test_the_digest_and_the_unsubscribe_pages_name_categories_in_words(smtp: SmtpServer, make_user: Any) -> None:
    alice = make_user("alice", email="alice@example.com")
    deploys = Topic.objects.create(slug="deploys", title="Production deploys")
    send(alice, "a message")
    send(alice, "deployed", topic_id=deploys.id)
    emailed()
    text = text_of(smtp.messages[0])
    assert "Stop emails about Message notifications:" in text and "Stop emails about Production deploys:" in text
    assert "kind:" not in text and "topic:" not in text
    link = next(line for line in text.splitlines() if line.startswith("Stop emails about Message notifications:"))
    url = urlsplit(link.split(": ", 1)[1])
    confirm = Client().get(f"{url.path}?{url.query}").content.decode()
    assert 'id="unsubscribe-what">Message notifications<' in confirm, "the confirm page says what will stop"
    done = Client().post(url.path, {"token": parse_qs(url.query)["token"][0]})
    assert "no more email about Message notifications." in done.content.decode()


def test_the_unsubscribe_link_of_a_deleted_user_says_it_no_longer_applies(smtp: SmtpServer, make_user: Any) -> None:
    alice = make_user("alice", email="alice@example.com")
    send(alice, "build failed", kind="build.failed")
    emailed()
    url = urlsplit("".join(str(smtp.messages[0]["List-Unsubscribe"]).split()).strip("<>"))
    alice.delete()
    client = Client()
    for response in (
        client.get(f"{url.path}?{url.query}"),
        client.post(f"{url.path}?{url.query}", "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"),
    ):
        assert response.status_code == 410
        assert "no longer applies" in response.content.decode()
    assert not ChannelPreference.objects.exists()


def test_quiet_hours_ending_in_the_repeated_autumn_hour_hold_mail_until_then(smtp: SmtpServer, make_user: Any) -> None:
    alice = make_user("alice", email="alice@example.com")
    services.set_preferences(user_id=alice.id, choices=[], quiet=services.Quiet("Europe/Paris", time(1), time(2, 30)))
    send(alice, "at night")
    second_pass = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 02:15 CET, the clock's second time through 02:xx
    Notification.objects.update(created_at=second_pass - timedelta(minutes=5))
    services.deliver_due(channel=Channel.EMAIL, now=second_pass)
    assert smtp.messages == [], "held: the quiet hours end at 02:30 CET"
    services.deliver_due(channel=Channel.EMAIL, now=datetime(2026, 10, 25, 1, 31, tzinfo=UTC))
    assert [m["Subject"] for m in smtp.messages] == ["at night"]


def test_archived_deleted_and_snoozed_are_not_emailed_and_a_woken_snooze_is_due_again(smtp: SmtpServer, make_user: Any) -> None:
    alice = make_user("alice", email="alice@example.com")
    archived, deleted, snoozed, _kept = (send(alice, title) for title in ("archived", "deleted", "snoozed", "kept"))
    until = timezone.now() + timedelta(hours=1)
    for change in (
        Change("archive", ids=(archived.id,)),
        Change("delete", ids=(deleted.id,)),
        Change("snooze", ids=(snoozed.id,), until=until),
    ):
        services.change_inbox(user_id=alice.id, change=change)
    emailed()
    assert [m["Subject"] for m in smtp.messages] == ["kept"]
    services.wake(user_id=alice.id, now=until)
    services.deliver_due(channel=Channel.EMAIL, now=until + timedelta(seconds=301))  # the next digest window
    assert [m["Subject"] for m in smtp.messages] == ["kept", "snoozed"]
