"""Changes of my inbox's state over HTTP (notifications/api/inbox_state.py): the socket's ops, ids and answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from notifications.models import ClientEvent, InboxEvent, Notification, Topic
from tests.api.conftest import Api, assert_error, notify_many

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


def test_every_op_answers_what_it_did_and_the_counts(reader: Api, user: Any) -> None:
    ids = [d.id for d in notify_many(user, 4)]
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    steps = [
        ("read", {"ids": [ids[0]]}, {"changed": 1, "unread": 3, "unseen": 4}),
        ("unread", {"ids": [ids[0]]}, {"changed": 1, "unread": 4, "unseen": 4}),
        ("seen", {"up_to_seq": 2}, {"changed": 2, "unread": 4, "unseen": 2, "up_to_seq": 2}),
        ("archive", {"ids": [ids[1], ids[2]]}, {"changed": 2, "unread": 2, "unseen": 1}),
        ("unarchive", {"filter": {}}, {"changed": 2, "unread": 4, "unseen": 2}),
        ("snooze", {"ids": [ids[3]], "until": until}, {"changed": 1, "unread": 3, "unseen": 1}),
        ("delete", {"ids": [ids[0]]}, {"changed": 1, "unread": 2, "unseen": 1}),
    ]
    for seq, (op, body, expected) in enumerate(steps, 5):
        r = reader.post(f"/me/notifications/{op}", body)
        assert r.status_code == 200, r.content
        answer = r.json()
        assert answer == answer | {"op": op, "seq": seq, "head_seq": seq, "repeated": False, **expected}, op
    assert reader.get("/me/unread-count").json() == {"unread": 2, "unseen": 1, "head_seq": 11}
    assert [n["id"] for n in reader.get("/me/notifications").json()["items"]] == [ids[2], ids[1]]
    assert [n["id"] for n in reader.get("/me/notifications", snoozed="true").json()["items"]] == [ids[3]]
    assert reader.get("/me/notifications", archived="true").json()["items"] == []


def test_the_archived_view_lists_what_was_archived_by_filter(reader: Api, user: Any) -> None:
    topic = Topic.objects.create(slug="ci", title="CI")
    notify_many(user, 2, topic_id=topic.id, kind="build.failed")
    notify_many(user, 1)
    cleared = reader.post("/me/notifications/archive", {"filter": {"topic": "ci", "kind": "build"}}).json()
    assert (cleared["changed"], cleared["up_to_seq"], cleared["changed_ids"]) == (2, 3, [])
    page = reader.get("/me/notifications", archived="true").json()
    assert [n["seq"] for n in page["items"]] == [2, 1] and all(n["archived_at"] for n in page["items"])
    assert page["unread"] == 1 and page["unseen"] == 1


@pytest.mark.parametrize("how", ["header", "body"])
def test_the_same_id_again_applies_nothing_and_answers_200_repeated(reader: Api, user: Any, how: str) -> None:
    (a,) = notify_many(user, 1)

    def archive(event_id: str) -> Any:
        body = {"ids": [a.id]} | ({"id": event_id} if how == "body" else {})
        return reader.post("/me/notifications/archive", body, key=event_id if how == "header" else None)

    first = archive("3f2c6f0e-9d1b-4f8e-b0a8-2b8c1c7d9e10").json()
    reader.post("/me/notifications/unarchive", {"ids": [a.id]}, key="later")
    again = archive("3f2c6f0e-9d1b-4f8e-b0a8-2b8c1c7d9e10")
    assert again.status_code == 200
    assert again.json() == first | {"repeated": True, "unread": 1, "unseen": 1, "head_seq": 3}
    assert Notification.objects.get(id=a.id).archived_at is None  # the later unarchive stands
    assert (InboxEvent.objects.count(), ClientEvent.objects.count()) == (2, 2)


def test_an_id_in_the_header_and_another_in_the_body_is_refused(reader: Api, user: Any) -> None:
    (a,) = notify_many(user, 1)
    assert_error(reader.post("/me/notifications/read", {"ids": [a.id], "id": "one"}, key="two"), 422, "invalid")
    assert not InboxEvent.objects.exists()


@pytest.mark.parametrize(
    ("op", "body"),
    [
        ("archive", {}),
        ("archive", {"ids": [1], "filter": {}}),
        ("archive", {"all": True}),
        ("delete", {"filter": {"when": "now"}}),
        ("read", {"filter": {"kind": "bad kind"}}),
        ("read", {"filter": {"topic": "not a slug"}}),
        ("read", {"ids": [1], "id": "not ok!"}),
        ("unread", {"ids": []}),
        ("unread", {"filter": {}}),
        ("seen", {"up_to_seq": -1}),
        ("snooze", {"ids": [1], "until": "2020-01-01T00:00:00+00:00"}),
        ("snooze", {"ids": [1], "until": "2999-01-01T00:00:00+00:00"}),
        ("snooze", {"ids": [1], "until": "2027-01-01T00:00:00"}),
        ("snooze", {"ids": [1]}),
    ],
)
def test_bad_input_is_a_json_422_and_changes_nothing(reader: Api, user: Any, op: str, body: dict[str, Any]) -> None:
    notify_many(user, 1)
    assert_error(reader.post(f"/me/notifications/{op}", body), 422, "invalid")
    assert not InboxEvent.objects.exists()


def test_a_bad_id_in_the_header_is_a_422(reader: Api, user: Any) -> None:
    assert_error(reader.post("/me/notifications/seen", {"up_to_seq": 0}, key="has space"), 422, "invalid")


def test_asking_for_the_archive_and_the_snoozed_at_once_is_a_422(reader: Api) -> None:
    assert_error(reader.get("/me/notifications", archived="true", snoozed="true"), 422, "invalid")


def test_the_changes_count_against_the_callers_rate_limit(reader: Api, user: Any, settings: Any) -> None:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "RATE_ME": "2/m"}
    for _ in range(2):
        assert reader.post("/me/notifications/seen", {"up_to_seq": 0}).status_code == 200
    assert_error(reader.post("/me/notifications/archive", {"filter": {}}), 429, "rate_limited")
