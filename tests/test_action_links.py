"""One-click answers: the email digest (a real SMTP server) links each action to answer to a signed page that
confirms on GET and answers on POST (first answer wins, as from any device); the Web Push payload carries the
signed token sw.js POSTs. A link scanner's GET and a tampered token answer nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from notifications import services
from notifications.changes import Change
from notifications.delivery import webpush
from notifications.delivery.action_links import action_token
from notifications.delivery.base import Item
from notifications.models import ActionAnswer, Channel, InboxEvent, Notification
from tests.away import SmtpServer, away_settings, text_of, use_smtp

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

ACTIONS: Any = [
    {"id": "approve", "label": "Approve", "style": "primary"},
    {"id": "reject", "label": "Reject", "style": "danger"},
    {"id": "logs", "label": "Logs", "style": "secondary", "url": "https://ci.example.com/42"},
]


@pytest.fixture
def smtp(settings: Any) -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    use_smtp(settings, server.port)
    settings.AWAY = away_settings()
    yield server
    server.stop()


def publish(user: Any) -> services.Delivery:
    return services.notify(recipient_ids=[user.id], content=services.Content.checked(title="Deploy v2?", actions=ACTIONS)).deliveries[0]


def digest_links(smtp: SmtpServer) -> dict[str, str]:
    """label -> the path and query of its one-click link, from the digest's text part."""
    text = text_of(smtp.messages[-1])
    return {
        label: urlsplit(url)._replace(scheme="", netloc="").geturl()
        for label, url in re.findall(r"^  (\w+): (http\S+/action/\S+)\r?$", text, re.M)
    }


def test_the_digest_links_each_answer_to_a_page_that_confirms_on_get_and_answers_on_post(smtp: SmtpServer, make_user: Any) -> None:
    alice = make_user("alice", email="alice@example.com")
    d = publish(alice)
    services.deliver_due(channel=Channel.EMAIL, now=timezone.now() + timedelta(seconds=1))
    links = digest_links(smtp)
    assert set(links) == {"Approve", "Reject"}, "a link action is no answer: it gets no one-click link"
    html_part = smtp.messages[-1].get_body(preferencelist=("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert html.count("/action/?token=") == 2

    client = Client()  # no session: as from a mail client
    confirm = client.get(links["Approve"])
    assert confirm.status_code == 200 and 'id="action-confirm">Approve<' in confirm.content.decode()
    assert not ActionAnswer.objects.exists() and not InboxEvent.objects.exists(), "a GET (a link scanner) answers nothing"

    tampered = client.post("/action/", {"token": links["Approve"].split("token=")[1][:-3] + "xyz"})
    assert tampered.status_code == 400 and not ActionAnswer.objects.exists()

    token = links["Approve"].split("token=")[1]
    done = client.post("/action/", {"token": unquote(token)})
    assert done.status_code == 200 and 'id="action-done"' in done.content.decode()
    assert ActionAnswer.objects.get().action == "approve" and Notification.objects.get(pk=d.id).read_at is not None
    assert client.post("/action/", {"token": unquote(token)}).status_code == 200, "the same answer again is fine"

    other = client.get(links["Reject"])
    assert 'id="action-standing"' in other.content.decode() and "<strong>Approve</strong> stands" in other.content.decode()
    refused = client.post("/action/", {"token": unquote(links["Reject"].split("token=")[1])})
    assert refused.status_code == 409 and "<strong>Approve</strong> stands" in refused.content.decode()
    assert ActionAnswer.objects.get().action == "approve"


def test_a_token_names_one_user_notification_and_action(make_user: Any) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    d = publish(alice)
    client = Client()
    bobs = action_token(user_id=bob.id, seq=d.seq, action="approve")  # bob has no notification at that seq
    assert client.get("/action/", {"token": bobs}).status_code == 404
    link = action_token(user_id=alice.id, seq=d.seq, action="logs")
    assert client.get("/action/", {"token": link}).status_code == 400, "a link action cannot be answered"
    gone = action_token(user_id=alice.id, seq=d.seq, action="approve")
    services.change_inbox(user_id=alice.id, change=Change("delete", ids=(d.id,)))
    assert client.post("/action/", {"token": gone}).status_code == 404
    assert client.get("/action/").status_code == 400
    assert not ActionAnswer.objects.exists()


def test_the_push_payload_carries_a_token_per_answer_and_the_json_answer_is_the_reply(make_user: Any) -> None:
    alice = make_user("alice")
    d = publish(alice)
    item = Item(d.id, d.seq, "Deploy v2?", "", "", "info", "message", None, timezone.now(), actions=ACTIONS)
    shown = json.loads(webpush.payload(item, alice.id))["actions"]
    assert [(a["id"], bool(a.get("token"))) for a in shown] == [("approve", True), ("reject", True), ("logs", False)]
    assert "token" not in json.dumps(json.loads(webpush.payload(item))), "no user, no token"
    client = Client()
    answered = client.post("/action/", {"token": shown[1]["token"]}, headers={"Accept": "application/json"})
    assert answered.status_code == 200
    assert {k: answered.json()[k] for k in ("ok", "answer", "notification")} == {"ok": True, "answer": "reject", "notification": d.id}
    refused = client.post("/action/", {"token": shown[0]["token"]}, headers={"Accept": "application/json"})
    assert refused.status_code == 409 and (refused.json()["error"], refused.json()["answer"]) == ("already_answered", "reject")
