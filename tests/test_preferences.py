"""The preferences page and its rules: quiet hours checked by one validator for the page and the API,
errors beside their field with every input kept, what "Default" means, categories in words, and quiet
hours that end correctly across both daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from notifications import services
from notifications.models import Channel, ChannelDefault, ChannelPreference, QuietHours, Topic
from notifications.services.preferences import category_label
from tests.api.conftest import Api

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

PARIS = ZoneInfo("Europe/Paris")
GOOD = {"quiet_start": "22:00", "quiet_end": "07:00", "time_zone": "Europe/Paris"}


def page(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def errors_beside(html: str, field: str) -> str:
    """The text of the error block that follows `field`'s input on the page ('' when none)."""
    start = html.index(f'name="{field}"')
    block = html[start : html.index("</div>", start)]
    return block.split('class="field-errors"', 1)[1] if 'class="field-errors"' in block else ""


@pytest.mark.parametrize(
    ("posted", "field"),
    [
        ({**GOOD, "quiet_start": "22:00+05:00"}, "quiet_start"),  # an offset beside the zone: stored as 22:00 before
        ({**GOOD, "quiet_start": "22:00:00-23:59"}, "quiet_start"),  # an offset PostgreSQL refuses: a 500 before
        ({**GOOD, "quiet_end": "07:00Z"}, "quiet_end"),
        ({**GOOD, "time_zone": "Mars/Olympus"}, "time_zone"),
        ({**GOOD, "quiet_end": "22:00"}, "quiet_end"),
        ({**GOOD, "quiet_end": ""}, "quiet_end"),
    ],
)
def test_the_page_refuses_the_quiet_hours_the_api_refuses(
    client: Client, user: Any, token_for: Any, posted: dict[str, str], field: str
) -> None:
    response = page(client, user).post("/preferences/", posted)
    assert response.status_code == 200
    assert errors_beside(response.content.decode(), field), f"an error beside {field}"
    assert not QuietHours.objects.exists(), "nothing saved"

    api = Api(token_for(user, ("read",)))
    quiet = {"time_zone": posted["time_zone"], "start": posted["quiet_start"], "end": posted["quiet_end"]}
    answer = api.client.put("/api/v1/me/preferences", {"quiet_hours": quiet}, content_type="application/json", headers=api.headers)
    assert answer.status_code == 422, "the same rule refuses it on the API"


def test_an_error_keeps_every_input_and_saves_nothing(client: Client, user: Any) -> None:
    Topic.objects.create(slug="deploys", title="Deploys")
    services.subscribe(user_id=user.id, slug="deploys")
    posted = {"email|topic:deploys": "off", "webpush|": "on", "quiet_start": "22:00", "quiet_end": "07:30", "time_zone": "Mars/Olympus"}
    html = page(client, user).post("/preferences/", posted).content.decode()
    assert "Unknown time zone." in errors_beside(html, "time_zone")
    assert 'value="Mars/Olympus"' in html and 'value="22:00"' in html and 'value="07:30"' in html
    assert '<option value="off" selected>Off</option>' in html.split('name="email|topic:deploys"')[1].split("</select>")[0]
    assert '<option value="on" selected>On</option>' in html.split('name="webpush|"')[1].split("</select>")[0]
    assert not ChannelPreference.objects.exists() and not QuietHours.objects.exists()


def test_a_time_zone_without_quiet_hours_is_not_dropped_silently(client: Client, user: Any) -> None:
    response = page(client, user).post("/preferences/", {"time_zone": "Europe/Paris"})
    html = response.content.decode()
    assert "Preferences saved" not in html
    assert "only with quiet hours" in errors_beside(html, "time_zone")
    assert 'value="Europe/Paris"' in html


def test_good_quiet_hours_are_saved(client: Client, user: Any) -> None:
    response = page(client, user).post("/preferences/", GOOD, follow=True)
    assert "Preferences saved." in response.content.decode()
    assert services.quiet_hours(user_id=user.id) == services.Quiet("Europe/Paris", time(22), time(7))


def test_default_says_what_it_is(client: Client, user: Any) -> None:
    Topic.objects.create(slug="deploys", title="Deploys")
    services.subscribe(user_id=user.id, slug="deploys")
    ChannelDefault.objects.create(channel=Channel.WEBPUSH, category="", enabled=False)
    services.set_preferences(user_id=user.id, choices=[services.Choice(Channel.EMAIL, "", False)], quiet=None)
    html = page(client, user).get("/preferences/").content.decode()

    def default_of(name: str) -> str:
        select = html.split(f'name="{name}"')[1].split("</select>")[0]
        return select.split('<option value=""')[1].split("</option>")[0].split(">")[-1]

    assert default_of("email|") == "Default (on)", "Everything's own default: the channel's"
    assert default_of("webpush|") == "Default (off)", "the operator's"
    assert default_of("email|topic:deploys") == "Default (off)", "my choice for everything"
    assert default_of("webpush|topic:deploys") == "Default (off)"


def test_categories_are_shown_in_words(client: Client, user: Any) -> None:
    Topic.objects.create(slug="deploys", title="Deploys")
    services.set_preferences(
        user_id=user.id,
        choices=[services.Choice(Channel.EMAIL, "kind:message", False), services.Choice(Channel.EMAIL, "topic:deploys", False)],
        quiet=None,
    )
    html = page(client, user).get("/preferences/").content.decode()
    rows = [r.split("</th>")[0] for r in html.split('<th scope="row">')[1:]]
    assert rows == ["Everything", "Message notifications", "Deploys"]


def test_category_label() -> None:
    titles = {"deploys": "Deploys"}
    assert category_label("", topic_titles=titles) == "Everything"
    assert category_label("topic:deploys", topic_titles=titles) == "Deploys"
    assert category_label("topic:gone", topic_titles=titles) == "gone"
    assert category_label("kind:build.failed", topic_titles=titles) == "Build failed notifications"


# --- quiet hours across daylight-saving changes (Europe/Paris, 2026) -------------------------------

NIGHT = services.Quiet("Europe/Paris", time(1), time(2, 30))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_autumn_an_end_in_the_repeated_hour_is_the_one_still_ahead() -> None:
    # 2026-10-25: at 03:00 CEST the clock goes back to 02:00 CET, so 02:00-03:00 happens twice.
    first_pass = utc("2026-10-24T23:30")  # 01:30 CEST
    assert NIGHT.until(first_pass) == utc("2026-10-25T00:30")  # 02:30 CEST, the first 02:30
    second_pass = utc("2026-10-25T01:15")  # 02:15 CET, the clock's second time through
    end = NIGHT.until(second_pass)
    assert end is not None and end > second_pass, "an end already past releases mail early"
    assert end == utc("2026-10-25T01:30"), "02:30 CET, the second 02:30"
    assert NIGHT.until(utc("2026-10-25T00:45")) is None, "02:45 CEST: the first 02:30 has passed"


def test_spring_an_end_in_the_skipped_hour_is_when_the_clock_jumps_past_it() -> None:
    # 2026-03-29: at 02:00 CET the clock jumps to 03:00 CEST; it never reads 02:30.
    end = NIGHT.until(utc("2026-03-29T00:30"))  # 01:30 CET
    assert end == utc("2026-03-29T01:00"), "03:00 CEST, not 03:30"
    assert NIGHT.until(utc("2026-03-29T01:00")) is None


def test_across_a_change_overnight_quiet_hours_last_until_the_local_end() -> None:
    overnight = services.Quiet("Europe/Paris", time(22), time(7))
    assert overnight.until(utc("2026-10-24T21:00")) == utc("2026-10-25T06:00")  # 23:00 CEST to 07:00 CET
    assert overnight.until(utc("2026-03-28T22:00")) == utc("2026-03-29T05:00")  # 23:00 CET to 07:00 CEST
