"""A notification's `actions` and `group_key`: refused the same way on every way in, and the grouped inbox."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from notifications import public, selectors, services
from notifications.errors import ServiceError
from notifications.forms import ComposeForm
from notifications.models import Notification, Subscription, Topic
from tests.api.conftest import Api, assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

OK: Any = {"id": "approve", "label": "Approve", "style": "primary"}

# (actions or group_key, the field path the error names)
BAD: list[tuple[dict[str, Any], str]] = [
    ({"actions": [{**OK, "id": "not a slug"}]}, "actions.0.id"),
    ({"actions": [{**OK, "id": "x" * 65}]}, "actions.0.id"),
    ({"actions": [{**OK, "label": "x" * 65}]}, "actions.0.label"),
    ({"actions": [{**OK, "label": "  "}]}, "actions.0.label"),
    ({"actions": [{**OK, "style": "loud"}]}, "actions.0.style"),
    ({"actions": [{**OK, "url": "javascript:alert(1)"}]}, "actions.0.url"),
    ({"actions": [{**OK, "url": "//evil.example"}]}, "actions.0.url"),
    ({"actions": [{**OK, "colour": "red"}]}, "actions.0.colour"),
    ({"actions": [{"id": "a", "label": "A"}]}, "actions.0.style"),
    ({"actions": [OK, {**OK, "label": "Again"}]}, "actions"),  # ids are unique
    ({"actions": [{**OK, "id": f"a{i}"} for i in range(4)]}, "actions"),  # at most 3
    ({"actions": {"id": "a"}}, "actions"),
    ({"group_key": "g" * 201}, "group_key"),
    ({"group_key": "nul\x00"}, "group_key"),
]
IDS = [path + ":" + str(bad)[:40] for bad, path in BAD]


@pytest.mark.parametrize(("bad", "path"), BAD, ids=IDS)
def test_the_api_refuses_a_bad_action_or_group_key_naming_the_field(publisher: Api, user: Any, bad: dict[str, Any], path: str) -> None:
    body = assert_error(publisher.post("/notifications", {"users": [user.id], "title": "t", **bad}), 422, "invalid")
    assert path in body["fields"], body
    topic = Topic.objects.create(slug="deploys", title="Deploys")
    Subscription.objects.create(user=user, topic=topic)
    body = assert_error(publisher.post("/notifications", {"topic": "deploys", "title": "t", **bad}), 422, "invalid")
    assert path in body["fields"], body
    batch = {"notifications": [{"users": [user.id], "title": "fine"}, {"users": [user.id], "title": "t", **bad}]}
    body = assert_error(publisher.post("/notifications/batch", batch), 422, "invalid")
    assert f"notifications.1.{path}" in body["fields"], body
    assert not Notification.objects.exists()


@pytest.mark.parametrize(("bad", "path"), BAD, ids=IDS)
def test_notify_the_form_and_the_cli_refuse_it_too(user: Any, bad: dict[str, Any], path: str) -> None:
    with pytest.raises(ServiceError) as e:
        public.notify([user], title="t", **bad)
    assert e.value.code == "invalid_field" and path in e.value.fields
    field, _, rest = path.partition(".")
    form = ComposeForm({"audience": "users", "usernames": user.get_username(), "title": "t", "level": "info", **_as_form(bad)})
    assert not form.is_valid() and field in form.errors
    if rest and isinstance(bad.get("actions"), list):
        assert any(rest in str(message) for message in form.errors[field]), form.errors
    option = f"--{field.replace('_', '-')}"
    value = bad[field] if isinstance(bad[field], str) else _json(bad[field])
    with pytest.raises(CommandError, match=option):
        call_command("notify", user.get_username(), "--title", "t", option, value)
    assert not Notification.objects.exists()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _as_form(values: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else _json(v) for k, v in values.items()}


def test_the_form_sends_actions_and_a_group_key(user: Any, make_user: Any) -> None:
    staff = make_user("staff", is_staff=True)
    data = {"audience": "users", "usernames": user.get_username(), "title": "Deploy?", "level": "info"}
    logs = {"id": "logs", "label": "Logs", "style": "secondary", "url": "/l"}
    form = ComposeForm({**data, "actions": _json([OK, logs]), "group_key": "d"})
    assert form.is_valid(), form.errors
    form.publish(actor_id=staff.id)
    n = Notification.objects.get(recipient=user)
    assert (n.group_key, n.actor_id) == ("d", staff.id)
    assert n.actions == [{**OK, "url": ""}, logs]
    form = ComposeForm({**data, "actions": "not json"})
    assert not form.is_valid() and "actions" in form.errors


def test_actions_and_group_key_come_back_from_the_inbox(publisher: Api, reader: Api, user: Any) -> None:
    actions = [OK, {"id": "logs", "label": "View logs", "style": "secondary", "url": "https://ci.example/23"}]
    body = {"users": [user.id], "title": "Deploy?", "actions": actions, "group_key": "d"}
    assert publisher.post("/notifications", body).status_code == 201
    [item] = reader.get("/me/notifications").json()["items"]
    assert item["actions"] == [{**OK, "url": ""}, actions[1]] and item["group_key"] == "d" and item["group"] is None


# --- grouping -----------------------------------------------------------------------------------


def publish(user: Any, title: str, *, group: str = "", actor: Any = None, read: bool = False) -> int:
    content = services.Content(title=title, group_key=group, actor_id=actor.id if actor else None)
    delivery = services.notify(recipient_ids=[user.id], content=content).deliveries[0]
    if read:
        services.mark_read(user_id=user.id, ids=[delivery.id])
    return delivery.seq


def test_the_grouped_inbox_shows_one_row_per_group_with_its_latest_count_and_actors(reader: Api, user: Any, make_user: Any) -> None:
    ana, bo, cy = make_user("ana"), make_user("bo"), make_user("cy")
    publish(user, "ana commented", group="pr-1", actor=ana, read=True)
    publish(user, "plain one")
    publish(user, "bo commented", group="pr-1", actor=bo)
    publish(user, "deploy", group="deploys")
    again = publish(user, "ana commented again", group="pr-1", actor=ana)
    publish(user, "cy commented", group="pr-2", actor=cy, read=True)

    page = reader.get("/me/notifications", grouped="true").json()
    rows = [(i["title"], i["group"] and (i["group"]["count"], i["group"]["unread"], i["group"]["actors"])) for i in page["items"]]
    assert rows == [
        ("cy commented", (1, 0, ["cy"])),
        ("ana commented again", (3, 2, ["ana", "bo"])),  # distinct actors, the latest first
        ("deploy", (1, 1, [])),
        ("plain one", None),
    ]
    # The badge as rows: "plain one", the pr-1 group and "deploys" (pr-2 is read); the counter still counts notifications.
    assert (page["unread_rows"], page["unread"]) == (3, 4)
    assert selectors.unread_rows(user.id) == 3

    # Paging by `before` never shows a group twice: its row is where its latest is.
    first = reader.get("/me/notifications", grouped="true", limit=2).json()
    assert [i["title"] for i in first["items"]] == ["cy commented", "ana commented again"] and first["next_before"] == again
    rest = reader.get("/me/notifications", grouped="true", limit=2, before=first["next_before"]).json()
    assert [i["title"] for i in rest["items"]] == ["deploy", "plain one"] and rest["next_before"] is None

    # Opening a row: its members, newest first, each itself (per seq, as replay has them).
    members = reader.get("/me/notifications", group_key="pr-1").json()["items"]
    assert [(m["title"], m["read"]) for m in members] == [("ana commented again", False), ("bo commented", False), ("ana commented", True)]
    # Filters apply before grouping: unread only, the row is the group's latest unread, counting the unread.
    unread = reader.get("/me/notifications", grouped="true", unread="true").json()["items"]
    expected = [("ana commented again", 2), ("deploy", 1), ("plain one", None)]
    assert [(i["title"], i["group"] and i["group"]["count"]) for i in unread] == expected
    # One group's row alone.
    [row] = reader.get("/me/notifications", grouped="true", group_key="pr-1").json()["items"]
    assert row["group"]["count"] == 3


def test_a_grouped_page_is_newest_first(reader: Api) -> None:
    body = assert_error(reader.get("/me/notifications", grouped="true", since=0), 422, "invalid")
    assert "grouped pages are newest first" in body["message"]


def test_the_groups_figures_name_at_most_five_actors_and_count_them_all(reader: Api, user: Any, make_user: Any) -> None:
    actors = [make_user(f"actor{i}") for i in range(7)]
    for a in actors:
        publish(user, f"{a.username} liked it", group="likes", actor=a)
    [row] = reader.get("/me/notifications", grouped="true").json()["items"]
    assert row["group"]["actors"] == [f"actor{i}" for i in range(6, 1, -1)] and row["group"]["actor_count"] == 7


def test_the_digest_lists_a_group_once_with_its_count(user: Any) -> None:
    from datetime import UTC, datetime

    from notifications import delivery
    from notifications.delivery.email import build_digest

    def item(seq: int, title: str, group: str = "") -> delivery.Item:
        return delivery.Item(seq, seq, title, "", "", "info", "k", None, datetime.now(UTC), group_key=group)

    items = [item(1, "ana commented", "pr-1"), item(2, "plain"), item(3, "bo commented", "pr-1"), item(4, "cy commented", "pr-1")]
    recipient = delivery.Recipient(user.id, "alice", "alice@example.com")
    message = build_digest(recipient=recipient, items=items, config=delivery.get_settings())
    text = str(message.body)
    assert "* cy commented (and 2 more)" in text and "* plain" in text
    assert "ana commented" not in text and "bo commented" not in text
    html = str(message.alternatives[0][0])
    assert "cy commented</strong></a> and 2 more" in html and "ana commented" not in html
    assert message.subject.startswith("4 new notifications")


def test_cli_takes_actions_and_a_group_key(user: Any) -> None:
    out = StringIO()
    call_command("notify", user.get_username(), "--title", "t", "--actions", _json([OK]), "--group-key", "g", stdout=out)
    n = Notification.objects.get()
    assert (n.actions, n.group_key) == ([{**OK, "url": ""}], "g")


def test_the_admin_shows_actions_and_group_key_read_only(admin_client: Any, user: Any) -> None:
    from django.urls import reverse

    content = services.Content(title="Deploy?", actions=[OK], group_key="deploys")
    delivery = services.notify(recipient_ids=[user.id], content=content).deliveries[0]
    page = admin_client.get(reverse("admin:notifications_notification_change", args=[delivery.id]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Approve" in text and "deploys" in text and 'name="actions"' not in text and 'name="group_key"' not in text
