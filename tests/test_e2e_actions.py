"""The dashboard in headless Chromium: a notification's action buttons, and a group as one row (real daphne,
PostgreSQL, Redis). Rendered by the server on load and by dashboard.js live, the same way."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests import test_e2e_browser as e2e
from tests import test_rules
from tests.conftest import DaphneServer
from tests.test_e2e_browser import create_user, items, log_in, store_and_push

pytestmark = pytest.mark.browser
browser, new_context = e2e.browser, e2e.new_context  # fixtures
dashboard_page = test_rules.dashboard_page  # fixture: the static scripts served on a page of their own

ACTIONS = [
    {"id": "approve", "label": "Approve", "style": "primary", "url": ""},
    {"id": "reject", "label": "Reject", "style": "danger", "url": ""},
    {"id": "logs", "label": "View logs", "style": "secondary", "url": "https://ci.example/23"},
]


def buttons(row: Any) -> list[tuple[str, str, str | None]]:
    """(tag, text, href) of each of the row's own buttons."""
    found = row.locator("[data-field=actions] > [data-action]")
    return [
        (found.nth(i).evaluate("el => el.tagName.toLowerCase()"), found.nth(i).inner_text(), found.nth(i).get_attribute("href"))
        for i in range(found.count())
    ]


def row_titles(page: Page) -> Any:
    return page.locator("#notification-list > li.item > .item-main .item-title")


def expect_rows(page: Page, titles: list[str]) -> None:
    expect(row_titles(page)).to_have_text(titles)


EXPECTED_BUTTONS = [("button", "Approve", None), ("button", "Reject", None), ("a", "View logs", "https://ci.example/23")]


@pytest.mark.server
def test_the_dashboard_shows_action_buttons_and_a_group_as_one_row(daphne: DaphneServer, new_context: Callable[[], BrowserContext]) -> None:
    alice, ana, bo, cy = (create_user(name) for name in ("alice", "ana", "bo", "cy"))
    store_and_push([alice], "ana commented", group_key="pr-1", actor_id=ana)
    store_and_push([alice], "Deploy v2.3?", actions=ACTIONS)
    store_and_push([alice], "bo commented", group_key="pr-1", actor_id=bo)

    # Rendered by the server: one row for pr-1 (its latest), and the deploy's buttons.
    page = log_in(new_context(), daphne, "alice")
    expect_rows(page, ["bo commented", "Deploy v2.3?"])
    group_row, deploy = items(page).nth(0), items(page).nth(1)
    expect(group_row.locator("[data-field=group-more]")).to_have_text("and 1 more")
    expect(group_row.locator("[data-field=group-actors]")).to_have_text("from bo, ana")
    assert buttons(deploy) == EXPECTED_BUTTONS
    expect(deploy.locator("[data-action=approve]")).to_have_class(re.compile(r"\bprimary\b"))

    # A click on an answer calls client.answer(seq, actionId); nothing is shown as answered until the server says so.
    page.evaluate("() => { window.answered = []; notifyClient.answer = async (seq, id) => { window.answered.push([seq, id]); }; }")
    deploy.get_by_role("button", name="Approve").click()
    page.wait_for_function("window.answered.length === 1")
    assert page.evaluate("window.answered") == [[2, "approve"]]

    # Opening the group lists its members, each itself.
    group_row.get_by_role("button", name="and 1 more").click()
    expect(group_row.locator(".group-members > li.item .item-title")).to_have_text(["bo commented", "ana commented"])
    expect(group_row.get_by_role("button", name="and 1 more")).to_have_attribute("aria-expanded", "true")

    # Live: a new member takes the group's row to the top with the group's figures; a new notification has its buttons.
    store_and_push([alice], "cy commented", group_key="pr-1", actor_id=cy)
    expect_rows(page, ["cy commented", "Deploy v2.3?"])
    expect(items(page).nth(0).locator("[data-field=group-more]")).to_have_text("and 2 more")
    expect(items(page).nth(0).locator("[data-field=group-actors]")).to_have_text("from cy, bo, ana")
    store_and_push([alice], "Deploy v2.4?", actions=ACTIONS)
    expect_rows(page, ["Deploy v2.4?", "cy commented", "Deploy v2.3?"])
    live = buttons(items(page).nth(0))
    assert live == EXPECTED_BUTTONS

    # The same rows drawn by the server after a reload.
    page.reload()
    expect_rows(page, ["Deploy v2.4?", "cy commented", "Deploy v2.3?"])
    assert buttons(items(page).nth(0)) == live
    expect(items(page).nth(1).locator("[data-field=group-more]")).to_have_text("and 2 more")
    expect(items(page).nth(1).locator("[data-field=group-actors]")).to_have_text("from cy, bo, ana")

    # "Mark read" on a group's row marks every member read.
    items(page).nth(1).get_by_role("button", name=re.compile("^Mark read")).click()
    expect(items(page).nth(1)).to_have_attribute("data-read", "true")
    expect(page.locator("#unread-count")).to_have_text("2")


# Until client.js has its own answer() (the browser outbox), a click sends the `action` frame on the page's real socket.
ANSWER_OVER_THE_SOCKET = "() => { notifyClient.answer = (seq, action) => notifyClient.request({ type: 'action', seq, action }); }"


@pytest.mark.server
def test_two_browsers_answer_at_once_one_answer_stands_and_both_show_it(
    daphne: DaphneServer, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    store_and_push([alice], "Deploy v2.3?", actions=ACTIONS)
    phone, laptop = log_in(new_context(), daphne, "alice"), log_in(new_context(), daphne, "alice")
    for page in (phone, laptop):
        page.wait_for_function("notifyClient.state === 'live'")
        page.evaluate(ANSWER_OVER_THE_SOCKET)
    # Both click before either hears of the other's answer.
    phone.evaluate("() => document.querySelector('li.item [data-action=approve]').click()")
    laptop.evaluate("() => document.querySelector('li.item [data-action=reject]').click()")

    for page in (phone, laptop):
        expect(items(page).nth(0).locator("[data-field=answer]")).to_be_visible()
    shown = {name: items(page).nth(0).locator("[data-field=answer]").inner_text() for name, page in (("phone", phone), ("laptop", laptop))}
    # One answer stands: the page that sent it shows it as its own, the other as given on another device.
    assert shown in (
        {"phone": "✓ Approve", "laptop": "✓ Approve · on another device"},
        {"phone": "✓ Reject · on another device", "laptop": "✓ Reject"},
    ), shown
    for page in (phone, laptop):
        expect(items(page).nth(0)).to_have_attribute("data-read", "true")
        expect(items(page).nth(0).locator("button[data-action]:visible")).to_have_count(0)
        expect(items(page).nth(0).locator("a[data-action=logs]")).to_be_visible()  # a link is no answer: it stays
    # Drawn by the server after a reload: the answer that stands.
    laptop.reload()
    standing = shown["laptop"].replace(" · on another device", "")
    expect(items(laptop).nth(0).locator("[data-field=answer]")).to_have_text(standing)
    expect(items(laptop).nth(0).locator("button[data-action]:visible")).to_have_count(0)


# sw.js as the browser runs it, with the service worker's globals it uses stood in for (as tests/test_rules.py does).
RUN_SW = """async (payload) => {
  const handlers = {};
  const shown = [];
  const opened = [];
  const add = self.addEventListener;
  self.addEventListener = (type, handler) => { handlers[type] = handler; };
  self.registration = { showNotification: async (title, options) => { shown.push(options); } };
  self.clients = { matchAll: async () => [], openWindow: async (url) => { opened.push(url); } };
  try { await import('/sw.js'); } finally { self.addEventListener = add; }
  const pending = [];
  handlers.push({ data: { json: () => payload }, waitUntil(p) { pending.push(p); } });
  await Promise.all(pending);
  for (const action of ["logs", "approve", ""]) {
    const waits = [];
    handlers.notificationclick({ action, notification: { data: shown[0].data, close() {} }, waitUntil(p) { waits.push(p); } });
    await Promise.all(waits);
  }
  return { actions: shown[0].actions, opened: opened.map((u) => new URL(u).pathname + new URL(u).search) };
}"""


@pytest.mark.parametrize("max_actions", [2, 3])
def test_the_service_worker_shows_the_actions_as_buttons(dashboard_page: Page, max_actions: int) -> None:
    dashboard_page.evaluate(f"() => {{ self.Notification = {{ maxActions: {max_actions} }}; }}")
    payload: dict[str, Any] = {
        "title": "Deploy?",
        "seq": 7,
        "url": "/deploys/7",
        "actions": [
            {"id": "logs", "label": "Logs", "url": "/logs/7"},
            {"id": "approve", "label": "Approve", "url": ""},
            {"id": "reject", "label": "Reject", "url": ""},
        ],
    }
    got = dashboard_page.evaluate(RUN_SW, payload)
    buttons = [{"action": a["id"], "title": a["label"]} for a in payload["actions"]]
    assert got["actions"] == buttons[:max_actions]
    # A button with a url opens it; an answer without a signed token (none in this payload) opens the inbox; the
    # notification itself, its url.
    assert got["opened"] == ["/logs/7", "/inbox/", "/deploys/7"]


# sw.js's answer from a push: the signed token POSTed to /action/ (fetch stood in for), the inbox opened only when it fails.
RUN_SW_ANSWER = """async ({ payload, statuses }) => {
  const handlers = {};
  const shown = [];
  const opened = [];
  const posted = [];
  const add = self.addEventListener;
  self.addEventListener = (type, handler) => { handlers[type] = handler; };
  self.registration = { showNotification: async (title, options) => { shown.push(options); } };
  self.clients = { matchAll: async () => [], openWindow: async (url) => { opened.push(url); } };
  const realFetch = self.fetch;
  self.fetch = async (url, init) => {
    posted.push({ url: String(url), method: init.method, body: String(init.body), accept: init.headers.Accept });
    const status = statuses.shift();
    if (status === 0) throw new TypeError("offline");
    return new Response("{}", { status });
  };
  try {
    await import('/sw.js');
    const pending = [];
    handlers.push({ data: { json: () => payload }, waitUntil(p) { pending.push(p); } });
    await Promise.all(pending);
    const results = [];
    for (const _ of [1, 2, 3]) {
      const waits = [];
      handlers.notificationclick({ action: "approve", notification: { data: shown[0].data, close() {} }, waitUntil(p) { waits.push(p); } });
      await Promise.all(waits);
      results.push(opened.length);
    }
    return { posted, results };
  } finally {
    self.addEventListener = add;
    self.fetch = realFetch;
  }
}"""


def test_the_service_worker_answers_with_the_signed_token_and_opens_the_inbox_only_when_that_fails(dashboard_page: Page) -> None:
    payload = {"title": "Deploy?", "seq": 7, "url": "", "actions": [{"id": "approve", "label": "Approve", "url": "", "token": "s.i.g"}]}
    got = dashboard_page.evaluate(RUN_SW_ANSWER, {"payload": payload, "statuses": [200, 409, 0]})
    assert [(p["url"], p["method"], p["body"], p["accept"]) for p in got["posted"]] == [
        ("/action/", "POST", "token=s.i.g", "application/json")
    ] * 3
    assert got["results"] == [0, 1, 2], "answered: nothing opens; refused (409) or offline: the inbox opens"
