"""`POST /api/v1/me/notifications/action`: the answer over HTTP, its Idempotency-Key, its refusals, and the item's `answer`."""

from __future__ import annotations

from typing import Any

import pytest

from notifications.models import ActionAnswer
from tests.api.conftest import Api, assert_error
from tests.helpers import ask_to_deploy as publish

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


def test_the_first_answer_stands_and_the_item_shows_it(reader: Api, user: Any) -> None:
    d = publish(user)
    assert reader.get("/me/notifications").json()["items"][0]["answer"] is None
    ok = reader.post("/me/notifications/action", {"seq": d.seq, "action": "approve"}, key="k1")
    assert ok.status_code == 200, ok.content
    assert ok.json() == {
        "ok": True, "op": "action", "notification": d.id, "answer": "approve", "error": None, "message": None,
        "seq": d.seq + 1, "unread": 0, "unseen": 1, "head_seq": d.seq + 1, "repeated": False,
    }  # fmt: skip
    repeat = reader.post("/me/notifications/action", {"seq": d.seq, "action": "approve"}, key="k1")
    assert (repeat.status_code, repeat.json()["repeated"], repeat.json()["seq"]) == (200, True, d.seq + 1)
    same = reader.post("/me/notifications/action", {"seq": d.seq, "action": "approve", "id": "k2"})
    assert (same.status_code, same.json()["ok"], same.json()["seq"]) == (200, True, None)
    refused = reader.post("/me/notifications/action", {"seq": d.seq, "action": "reject"})
    assert refused.status_code == 409
    assert {k: refused.json()[k] for k in ("ok", "error", "answer")} == {"ok": False, "error": "already_answered", "answer": "approve"}
    [item] = reader.get("/me/notifications").json()["items"]
    assert (item["answer"], item["read"]) == ("approve", True)
    assert ActionAnswer.objects.count() == 1


def test_an_unknown_action_a_link_or_another_users_notification_is_refused(reader: Api, user: Any, make_user: Any) -> None:
    d = publish(user)
    theirs = publish(make_user())
    body = assert_error(reader.post("/me/notifications/action", {"seq": d.seq, "action": "deploy"}), 422, "invalid_field")
    assert body["fields"] == {"action": "unknown"}
    body = assert_error(reader.post("/me/notifications/action", {"seq": d.seq, "action": "logs"}), 422, "invalid_field")
    assert body["fields"] == {"action": "a link"}
    assert_error(reader.post("/me/notifications/action", {"seq": theirs.seq + 5, "action": "approve"}), 404, "not_found")
    assert_error(reader.post("/me/notifications/action", {"seq": d.seq, "action": "not a slug"}), 422, "invalid")
    assert_error(reader.post("/me/notifications/action", {"seq": d.seq, "action": "approve", "id": "a"}, key="b"), 422, "invalid")
    assert not ActionAnswer.objects.exists()
