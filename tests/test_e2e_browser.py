"""The dashboard in headless Chromium against a real daphne process (PostgreSQL + Redis).

Playwright's sync API keeps an event loop running in the test's thread, where
Django refuses ORM calls and async_to_sync; every database write of these tests
(users, topics, publishing) therefore runs on a worker thread (`db`).
Nothing sleeps to wait: every wait is for the DOM, with a timeout.
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from django.db import connections
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import ROOT, DaphneServer

pytestmark = [pytest.mark.browser, pytest.mark.server]

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SCREENSHOT = ROOT / "docs" / "screenshots" / "inbox.png"
TIMEOUT_MS = 15_000

T = TypeVar("T")

expect.set_options(timeout=TIMEOUT_MS)


# --- the database, from a worker thread -------------------------------------------------------

_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db")


def db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    def run() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    return _worker.submit(run).result(timeout=60)


def create_user(username: str, *, staff: bool = False) -> int:
    def create() -> int:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(username=username, password=f"pw-{username}", is_staff=staff)
        return int(user.pk)

    return db(create)


def create_topic(slug: str, title: str, description: str = "") -> None:
    def create() -> None:
        from notifications.models import Topic

        Topic.objects.create(slug=slug, title=title, description=description)

    db(create)


def store_and_push(user_ids: list[int], title: str, **content: Any) -> None:
    """Publish through services.notify in this process (it pushes through Redis to the daphne process).

    For what the HTTP API would refuse (unsafe urls, to test the page's own
    defence) and for when the only server is down.
    """

    def send() -> None:
        from notifications import services

        topic_slug = content.pop("topic", None)
        if topic_slug:
            from notifications.models import Topic

            content["topic_id"] = Topic.objects.get(slug=topic_slug).id
        services.notify(recipient_ids=user_ids, content=services.Content(title=title, **content))

    db(send)


class Api:
    """A publishing service: POST /api/v1/notifications with a Bearer token (publish scope)."""

    def __init__(self, server: DaphneServer, token: str) -> None:
        self.server = server
        self.token = token

    def publish(self, title: str, *, users: list[int] | None = None, topic: str | None = None, **content: Any) -> dict[str, Any]:
        payload = {"title": title, **content, **({"topic": topic} if topic else {"users": users or []})}
        request = urllib.request.Request(
            f"{self.server.url}/api/v1/notifications",
            data=json.dumps(payload).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201, response.status
            return dict(json.loads(response.read()))


@pytest.fixture
def api(daphne: DaphneServer) -> Api:
    def issue() -> str:
        from django.contrib.auth import get_user_model

        from notifications import auth

        service = get_user_model().objects.create_user(username="ci-service")
        return auth.issue_token(user=service, scopes=["publish"], name="browser tests").secret

    return Api(daphne, db(issue))


def subscribe(username: str, slug: str) -> None:
    def run() -> None:
        from django.contrib.auth import get_user_model

        from notifications import services

        services.subscribe(user_id=get_user_model().objects.get(username=username).pk, slug=slug)

    db(run)


# --- the browser ------------------------------------------------------------------------------------


@pytest.fixture
def browser(daphne: DaphneServer) -> Iterator[Browser]:
    # Function-scoped, and after `daphne`: it is closed before the test database is flushed.
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[[], BrowserContext]]:
    contexts: list[BrowserContext] = []

    def make() -> BrowserContext:
        context = browser.new_context(viewport={"width": 1100, "height": 760})
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def log_in(context: BrowserContext, server: DaphneServer, username: str) -> Page:
    page = context.new_page()
    page.goto(f"{server.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"pw-{username}")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/inbox/$"))
    expect_live(page)
    return page


def expect_live(page: Page) -> None:
    expect(page.locator("#connection-text")).to_have_text("Live")


def items(page: Page) -> Any:
    return page.locator("#notification-list > li.item")


def titles(page: Page) -> list[str]:
    return list(page.locator("#notification-list > li.item .item-title").all_inner_texts())


def badge(page: Page) -> Any:
    return page.locator("#unread-count")


def expect_titles(page: Page, expected: list[str]) -> None:
    expect(page.locator("#notification-list > li.item .item-title")).to_have_text(expected)


# --- the tests -------------------------------------------------------------------------------------


def test_log_in_and_a_published_notification_appears_live_with_the_badge(
    daphne: DaphneServer, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    create_topic("deploys", "Deploys")
    subscribe("alice", "deploys")
    page = log_in(new_context(), daphne, "alice")
    expect(badge(page)).to_have_text("0")
    expect(page.locator("#empty")).to_be_visible()

    api.publish("Build #1042 passed", users=[alice], body="main is green: 1,204 tests in 3m 12s.", url="/builds/1042", level="success")
    expect_titles(page, ["Build #1042 passed"])
    expect(badge(page)).to_have_text("1")

    api.publish("Disk 85% full on db-2", users=[alice], body="Consider pruning old partitions.", level="warning")
    api.publish("v2.3.0 deployed to production", topic="deploys", body="Rolled out to 12 nodes.", url="https://example.com/releases/2.3.0")
    api.publish("Bob mentioned you", users=["alice"], body="Could you review the retention change before Friday?")
    expect_titles(page, ["Bob mentioned you", "v2.3.0 deployed to production", "Disk 85% full on db-2", "Build #1042 passed"])
    expect(badge(page)).to_have_text("4")
    first = items(page).first
    expect(first).to_have_attribute("data-read", "false")
    expect(items(page).nth(1).locator(".chip.topic")).to_have_text("deploys")
    expect(items(page).nth(1).get_by_role("link", name=re.compile("^Open"))).to_have_attribute("href", "https://example.com/releases/2.3.0")

    # Mark one read, so the picture shows both looks.
    items(page).nth(3).get_by_role("button", name=re.compile("^Mark read")).click()
    expect(items(page).nth(3)).to_have_attribute("data-read", "true")
    expect(badge(page)).to_have_text("3")

    page.evaluate("document.activeElement.blur()")
    page.mouse.move(1, 700)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "inbox.png"))
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOT))


def test_notification_text_is_never_html_and_only_safe_urls_become_links(
    daphne: DaphneServer, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    context = new_context()
    context.add_init_script("window.__pwned = false")
    page = log_in(context, daphne, "alice")
    evil = '<img src=x onerror="window.__pwned = true">'
    # The API refuses such urls; rows written another way (admin, older data) must still be harmless.
    store_and_push([alice], evil, body="<b>bold?</b>", url="javascript:window.__pwned=true")
    store_and_push([alice], "protocol-relative", url="//evil.example/x")
    expect_titles(page, ["protocol-relative", evil])
    assert page.locator("#notification-list img, #notification-list b").count() == 0
    for i in range(2):
        expect(items(page).nth(i).locator("[data-field=link]")).to_be_hidden()
    # The same rows rendered by the server on a fresh load.
    page.reload()
    expect_titles(page, ["protocol-relative", evil])
    assert page.locator("#notification-list img, #notification-list b").count() == 0
    assert page.evaluate("window.__pwned") is False


def test_reading_in_one_tab_updates_the_badge_in_the_other(
    daphne: DaphneServer, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    context = new_context()
    one = log_in(context, daphne, "alice")
    two = context.new_page()
    two.goto(f"{daphne.url}/inbox/")
    expect_live(two)

    api.publish("first", users=[alice])
    api.publish("second", users=[alice])
    for page in (one, two):
        expect_titles(page, ["second", "first"])
        expect(badge(page)).to_have_text("2")

    # From the keyboard: focus the button, press Enter.
    one.locator("#notification-list > li.item").nth(1).get_by_role("button", name=re.compile("^Mark read")).focus()
    one.keyboard.press("Enter")
    expect(badge(two)).to_have_text("1")
    expect(items(two).nth(1)).to_have_attribute("data-read", "true")
    expect(items(two).nth(0)).to_have_attribute("data-read", "false")

    one.get_by_role("button", name="Mark all read").click()
    expect(badge(two)).to_have_text("0")
    expect(items(two).nth(0)).to_have_attribute("data-read", "true")
    expect(badge(one)).to_have_text("0")


def test_offline_then_back_shows_exactly_the_missed_five_in_order(
    daphne: DaphneServer, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    context = new_context()
    page = log_in(context, daphne, "alice")
    api.publish("before", users=[alice])
    expect_titles(page, ["before"])

    # Chromium fires `offline` on the page; the client drops its socket at once
    # (an emulated offline network does not end an open WebSocket by itself).
    context.set_offline(True)
    expect(page.locator("#connection-text")).to_have_text("Offline")
    assert page.evaluate("window.notifyClient.connected") is False

    missed = [f"missed {i}" for i in range(1, 6)]
    for title in missed:
        api.publish(title, users=[alice])
    assert titles(page) == ["before"]  # no socket: nothing can have arrived

    context.set_offline(False)
    expect_live(page)
    expect_titles(page, [*reversed(missed), "before"])
    expect(page.locator("#sync-notice")).to_have_text("Restored 5 missed notifications.")
    expect(badge(page)).to_have_text("6")
    seqs = [int(s) for s in items(page).evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs == sorted(set(seqs), reverse=True) == list(range(6, 0, -1))


def test_reload_while_publishing_misses_nothing_and_doubles_nothing(
    daphne: DaphneServer, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    page = log_in(new_context(), daphne, "alice")
    expected = [f"n{i:02d}" for i in range(30)]
    reloads_done = threading.Event()

    def publisher() -> None:
        for i, title in enumerate(expected):
            api.publish(title, users=[alice])
            if i < len(expected) - 5:
                # Pace the stream so that it spans the reloads (a rate, not a wait for anything).
                reloads_done.wait(0.05)

    thread = threading.Thread(target=publisher)
    thread.start()
    try:
        for _ in range(3):
            page.reload()
            expect_live(page)
    finally:
        reloads_done.set()
        thread.join(30)

    expect(items(page)).to_have_count(len(expected))
    expect_titles(page, list(reversed(expected)))
    expect(badge(page)).to_have_text(str(len(expected)))

    # Initial state + every event applied == a fresh load.
    live_view = items(page).evaluate_all("els => els.map(e => [e.dataset.id, e.dataset.seq, e.dataset.read, e.innerText])")
    page.reload()
    expect_live(page)
    assert items(page).evaluate_all("els => els.map(e => [e.dataset.id, e.dataset.seq, e.dataset.read, e.innerText])") == live_view


def test_server_killed_and_restarted_the_page_reconnects_and_catches_up(
    daphne: DaphneServer, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    page = log_in(new_context(), daphne, "alice")
    api.publish("before the crash", users=[alice])
    expect_titles(page, ["before the crash"])

    daphne.kill()
    expect(page.locator("#connection-text")).to_contain_text("Reconnecting")
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    during = ["while down 1", "while down 2", "while down 3"]
    for title in during:
        # The only server is down: publish as another node would, straight through services.
        store_and_push([alice], title)

    daphne.restart()
    expect_live(page)
    expect_titles(page, [*reversed(during), "before the crash"])
    expect(page.locator("#sync-notice")).to_have_text("Restored 3 missed notifications.")
    expect(badge(page)).to_have_text("4")
    api.publish("after the restart", users=[alice])
    expect(items(page)).to_have_count(5)
    expect(items(page).first.locator(".item-title")).to_have_text("after the restart")


def test_staff_composes_to_a_topic_and_a_subscribers_open_page_shows_it(
    daphne: DaphneServer, new_context: Callable[[], BrowserContext]
) -> None:
    create_user("boss", staff=True)
    create_user("alice")
    create_topic("deploys", "Deploys", "Every production deploy")

    reader = log_in(new_context(), daphne, "alice")
    reader.get_by_role("link", name="Topics").click()
    reader.get_by_role("button", name="Subscribe to Deploys").click()
    expect(reader.locator(".messages")).to_contain_text("Subscribed to deploys.")
    expect(reader.get_by_role("button", name="Unsubscribe from Deploys")).to_be_visible()
    reader.get_by_role("link", name="Inbox", exact=True).click()
    expect_live(reader)

    staff = log_in(new_context(), daphne, "boss")
    staff.get_by_role("link", name="Compose").click()
    staff.get_by_label("Audience").select_option("topic")
    staff.get_by_label("Topic").select_option("deploys")
    staff.get_by_label("Title").fill("v3 is out")
    staff.get_by_label("Body").fill("Release notes are on the wiki.")
    staff.get_by_role("button", name="Send").click()
    expect(staff.locator(".messages")).to_contain_text("Sent to 1 recipient.")

    expect_titles(reader, ["v3 is out"])
    expect(items(reader).first.locator(".chip.topic")).to_have_text("deploys")
    expect(badge(reader)).to_have_text("1")


def test_ops_page_shows_live_figures(daphne: DaphneServer, new_context: Callable[[], BrowserContext]) -> None:
    create_user("boss", staff=True)
    page = log_in(new_context(), daphne, "boss")
    page.get_by_role("link", name="Ops").click()
    expect_live(page)
    figures = page.locator("#ops-figures")
    expect(figures).to_have_attribute("data-polls", re.compile(r"^[1-9]"))
    # This page's own socket is counted once the node has reported it (every few seconds).
    expect(figures.locator("[data-figure=connections]")).not_to_have_text("0", timeout=20_000)


def test_logging_out_elsewhere_shows_logged_out(daphne: DaphneServer, new_context: Callable[[], BrowserContext]) -> None:
    create_user("alice")
    context = new_context()
    page = log_in(context, daphne, "alice")
    other = context.new_page()
    other.goto(f"{daphne.url}/topics/")
    other.get_by_role("button", name="Log out").click()
    other.wait_for_url(re.compile(r"/login/$"))
    # The server checks sessions every heartbeat and closes with 4401; the client does not retry.
    expect(page.locator("#connection-text")).to_have_text("Logged out")
    expect(page.get_by_role("link", name="Log in again")).to_be_visible()
