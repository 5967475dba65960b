"""GET/PUT /api/v1/me/preferences, and the critical flag's scope on publish."""

from __future__ import annotations

from typing import Any

import pytest

from notifications import services
from tests.api.conftest import Api, assert_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

BODY = {
    "preferences": [
        {"channel": "email", "category": "topic:deploys", "enabled": False},
        {"channel": "webpush", "category": "", "enabled": True},
    ],
    "quiet_hours": {"time_zone": "Europe/Paris", "start": "22:00:00", "end": "07:00:00"},
}


def test_put_then_get_reads_it_back(reader: Api, user: Any) -> None:
    assert reader.get("/me/preferences").json() == {"preferences": [], "quiet_hours": None}
    response = reader.client.put("/api/v1/me/preferences", BODY, content_type="application/json", headers=reader.headers)
    assert response.status_code == 200, response.content
    got = reader.get("/me/preferences").json()
    assert sorted(got["preferences"], key=lambda c: c["channel"]) == BODY["preferences"]
    assert got["quiet_hours"] == BODY["quiet_hours"]
    assert services.quiet_hours(user_id=user.id) is not None


@pytest.mark.parametrize(
    "body",
    [
        {"preferences": [{"channel": "sms", "category": "", "enabled": True}]},
        {"preferences": [{"channel": "email", "category": "deploys", "enabled": True}]},
        {"quiet_hours": {"time_zone": "Mars/Olympus", "start": "22:00", "end": "07:00"}},
        {"quiet_hours": {"time_zone": "UTC", "start": "22:00", "end": "22:00"}},
        {"quiet_hours": {"time_zone": "UTC", "start": "22:58:29+23:47", "end": "07:00"}},  # an offset PostgreSQL refuses
        {"quiet_hours": {"time_zone": "Europe/Paris", "start": "22:00", "end": "07:00+01:00"}},  # an offset beside the zone
        {"preferences": [{"channel": "email", "category": "", "enabled": True}, {"channel": "email", "category": "", "enabled": False}]},
    ],
)
def test_bad_preferences_are_422(reader: Api, body: dict[str, Any]) -> None:
    response = reader.client.put("/api/v1/me/preferences", body, content_type="application/json", headers=reader.headers)
    assert_error(response, 422, "invalid")


def test_critical_needs_the_critical_scope(make_user: Any, token_for: Any, user: Any) -> None:
    service = make_user("pager")
    critical = {"users": [user.id], "title": "Site down", "level": "error", "data": {"critical": True}}
    assert_error(Api(token_for(service, ("publish",))).post("/notifications", critical), 403, "insufficient_scope")
    assert Api(token_for(service, ("publish", "critical"))).post("/notifications", critical).status_code == 201
