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
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from django.db import connections
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import ROOT, DaphneServer, database_url

pytestmark = pytest.mark.browser

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
        services.notify(recipient_ids=user_ids, content=services.Content.trusted(title=title, **content))

    db(send)


class Api:
    """A publishing service: POST /api/v1/notifications with a Bearer token (publish scope)."""

    def __init__(self, server: DaphneServer, token: str) -> None:
        self.server = server
        self.token = token

    def publish(self, title: str, *, users: list[int | str] | None = None, topic: str | None = None, **content: Any) -> dict[str, Any]:
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


@pytest.mark.server
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


@pytest.mark.server
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


@pytest.mark.server
def test_reading_in_one_tab_updates_the_badge_in_the_other(
    daphne: DaphneServer, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    context = new_context()
    one = log_in(context, daphne, "alice")
    two = context.new_page()
    two.goto(f"{daphne.url}/inbox/")
    expect_live(two)
    expect(two.get_by_role("button", name="Mark all read")).to_be_disabled()

    api.publish("first", users=[alice])
    api.publish("second", users=[alice])
    for page in (one, two):
        expect_titles(page, ["second", "first"])
        expect(badge(page)).to_have_text("2")
        expect(page.get_by_role("button", name="Mark all read")).to_be_enabled()

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
    # Nothing left to mark: the button steps back, on both tabs.
    for page in (one, two):
        expect(page.get_by_role("button", name="Mark all read")).to_be_disabled()
        expect(page.get_by_role("button", name="Mark all read")).to_have_class(re.compile(r"\bsecondary\b"))


@pytest.mark.server
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


@pytest.mark.server
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


@pytest.mark.server
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


@pytest.mark.server
def test_a_publish_from_the_cli_on_the_embedded_default_is_no_outage(
    daphne_factory: Callable[..., DaphneServer], new_context: Callable[[], BrowserContext]
) -> None:
    # The embedded default: an in-process channel layer, so a `manage.py notify` in another
    # process pushes to nobody and the open page learns of it from the next heartbeat.
    server = daphne_factory(REDIS_URL="")
    create_user("alice")
    page = log_in(new_context(), server, "alice")
    page.evaluate("() => { window.__synced = []; window.notifyClient.on('synced', (e) => window.__synced.push(e)); }")
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": ""}
    subprocess.run([sys.executable, "manage.py", "notify", "alice", "--title", "from the cli"], cwd=ROOT, env=env, check=True, timeout=60)

    expect_titles(page, ["from the cli"])
    page.wait_for_function("window.__synced.some((e) => e.replayed === 1)")
    expect(page.locator("#sync-notice")).to_be_hidden()
    assert page.evaluate("window.__synced.map((e) => e.outage)") == [False]
    expect(badge(page)).to_have_text("1")


SLOW_BACKOFF = "window.notifyClient.options.backoff = { minMs: 60000, baseMs: 60000, maxMs: 60000 }"


@pytest.mark.server
def test_reconnecting_can_be_cut_short_by_retry_now_by_the_network_and_by_the_tab_coming_back(
    daphne: DaphneServer, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    context = new_context()
    page = log_in(context, daphne, "alice")
    page.evaluate(SLOW_BACKOFF)  # a wait of a minute: only the three ways in can end it within the test's timeouts
    retry = page.get_by_role("button", name="Retry now")
    expect(retry).to_be_hidden()

    def outage() -> None:
        daphne.kill()
        expect(page.locator("#connection-text")).to_have_text(re.compile(r"^Reconnecting in \d+ s$"))
        expect(retry).to_be_visible()
        daphne.start()

    outage()
    retry.click()
    expect_live(page)
    expect(retry).to_be_hidden()

    outage()
    api.publish("while away", users=[alice])
    context.set_offline(True)
    expect(page.locator("#connection-text")).to_have_text("Offline")
    context.set_offline(False)  # the browser's `online` event
    expect_live(page)
    expect_titles(page, ["while away"])
    expect(page.locator("#sync-notice")).to_have_text("Restored 1 missed notification.")

    outage()
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # the tab shown again (it is visible)
    expect_live(page)


@pytest.mark.server
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


@pytest.mark.server
def test_filters_apply_to_live_notifications_and_older_pages_load(
    daphne: DaphneServer, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    create_topic("deploys", "Deploys")
    subscribe("alice", "deploys")

    def many() -> None:
        from notifications import services

        requests = [services.PublishRequest([alice], services.Content(title=f"old {i:02d}")) for i in range(55)]
        services.publish_many(requests)

    db(many)
    page = log_in(new_context(), daphne, "alice")
    expect(items(page)).to_have_count(50)
    page.get_by_role("button", name="Load older").click()
    expect(items(page)).to_have_count(55)
    expect(items(page).last.locator(".item-title")).to_have_text("old 00")
    expect(page.get_by_role("button", name="Load older")).to_be_hidden()

    page.get_by_label("Topic").select_option("deploys")
    page.get_by_label("Unread only").check()
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"topic=deploys"))
    expect_live(page)
    expect(page.locator("#empty")).to_be_visible()
    api.publish("not a deploy", users=[alice])
    api.publish("deploy 1", topic="deploys")
    expect_titles(page, ["deploy 1"])
    expect(badge(page)).to_have_text("57")  # the badge counts everything unread, filtered or not


@pytest.mark.server
def test_ops_page_shows_live_figures(daphne: DaphneServer, new_context: Callable[[], BrowserContext]) -> None:
    create_user("boss", staff=True)
    page = log_in(new_context(), daphne, "boss")
    page.get_by_role("link", name="Ops").click()
    expect_live(page)
    figures = page.locator("#ops-figures")
    expect(figures).to_have_attribute("data-polls", re.compile(r"^[1-9]"))
    # This page's own socket is counted once the node has reported it (every few seconds).
    expect(figures.locator("[data-figure=connections]")).not_to_have_text("0", timeout=20_000)
    # Each figure draws what it was over the last polls, the newest at the right.
    expect(figures.locator("div", has=page.locator("[data-figure=connections]")).locator("svg.spark")).to_have_attribute(
        "data-samples", re.compile(r"^([3-9]|\d\d+)$"), timeout=20_000
    )


@pytest.mark.server
def test_a_staff_header_fits_a_390_px_phone(daphne: DaphneServer, api: Api, browser: Browser) -> None:
    boss = create_user("boss", staff=True)
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    try:
        page = log_in(context, daphne, "boss")
        api.publish("Build #1042 passed", users=[boss], body="main is green.", level="success")
        expect_titles(page, ["Build #1042 passed"])
        for path in ["/inbox/", "/topics/", "/compose/", "/ops/", "/preferences/"]:
            page.goto(f"{daphne.url}{path}")
            expect_live(page)
            width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert width == [390, 390], (path, width)
            for name in ["Inbox", "Topics", "Preferences", "Compose", "Ops"]:
                box = page.get_by_role("navigation", name="Main").get_by_role("link", name=name).bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (path, name, box)
        page.goto(f"{daphne.url}/inbox/")
        expect_live(page)
        page.evaluate("document.activeElement.blur()")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "nav-390.png"))
        if os.environ.get("UPDATE_DOCS_SCREENSHOTS"):
            page.screenshot(path=str(DOCS_SCREENSHOT.parent / "nav-390.png"))
    finally:
        context.close()


@pytest.mark.server
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


# --- client.js alone, in the browser, against a scripted socket ---------------------------------------
# Paths a real server never takes on purpose (gaps, duplicates, expired seqs in a
# replay, close codes) driven frame by frame; no server or database involved.

FAKE_SOCKET = """
window.FakeSocket = class FakeSocket {
  static all = [];
  constructor(url) { this.url = url; this.readyState = 0; this.sent = []; FakeSocket.all.push(this); }
  send(data) { this.sent.push(JSON.parse(data)); }
  close() { this.readyState = 3; }
  recv(...frames) { this.readyState = 1; for (const f of frames) this.onmessage?.({ data: JSON.stringify(f) }); }
  end(code) { this.readyState = 3; this.onclose?.({ code, reason: "" }); }
};
window.note = (seq, extra = {}) => ({ type: "notification", seq, id: 1000 + seq, title: `n${seq}`, read: false, ...extra });
window.welcome = (head, unread = 0, unseen = unread) =>
  ({ type: "welcome", protocol: 1, user: 7, head_seq: head, unread, unseen, heartbeat_s: 25 });
window.change = (seq, op, fields, unread = 0, unseen = 0) => ({ type: "state", seq, op, ...fields, unread, unseen, head_seq: seq });
window.until = (test, ms = 5000) => new Promise((resolve, reject) => {
  const started = Date.now();
  const check = () => test() ? resolve() : Date.now() - started > ms ? reject(new Error("timed out")) : setTimeout(check, 5);
  check();
});
"""

STATIC_JS = ROOT / "notifications" / "static" / "notifications"  # client.js and the modules it imports, each served by its name


@pytest.fixture
def client_page() -> Iterator[Page]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = b.new_page()

        def serve(route: Any) -> None:
            name = route.request.url.rsplit("/", 1)[-1]
            module = STATIC_JS / name
            if module.suffix == ".js" and module.is_file():
                route.fulfill(body=module.read_text(), content_type="text/javascript")
            else:
                route.fulfill(body="<!doctype html><title>client.js</title>", content_type="text/html")

        page.route("http://client.test/**", serve)
        page.goto("http://client.test/")
        page.add_script_tag(content=FAKE_SOCKET)
        yield page
        b.close()


def run_js(page: Page, body: str) -> Any:
    """Run `body` in an async function with NotificationClient, State and the fakes in scope."""
    return page.evaluate(
        "async () => { const { NotificationClient, State } = await import('/client.js');\n"
        "const { FakeSocket, note, welcome, until } = window;\n" + body + "\n}"
    )


def test_client_drops_duplicates_and_fills_a_gap_in_order(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        const seen = [], restored = [];
        const c = new NotificationClient({ url: "ws://client.test/ws", userId: 7, since: 5, WebSocket: FakeSocket });
        c.on("notification", (n) => seen.push(n.seq));
        c.on("synced", (e) => restored.push(e.replayed));
        c.connect();
        const ws = FakeSocket.all[0];
        ws.recv(welcome(5), { type: "synced", head_seq: 5, replayed: 0, more: false });
        ws.recv(note(6), note(6), note(8));          // a duplicate, then a gap
        const resumes = ws.sent.filter((f) => f.type === "resume");
        ws.recv(note(7), note(8), { type: "synced", head_seq: 8, replayed: 2, more: false });
        // Had the server's own catch-up answered first, the replay of our resume brings nothing new.
        ws.recv(note(7), note(8), { type: "synced", head_seq: 8, replayed: 2, more: false }, note(9));
        return { url: ws.url, seen, resumes, restored, duplicates: c.duplicates, cursor: c.cursor,
                 stored: localStorage.getItem("notifications:cursor:7"), state: c.state };
        """,
    )
    assert result["url"] == "ws://client.test/ws?since=5&batch=1"
    assert result["seen"] == [6, 7, 8, 9]
    assert result["resumes"] == [{"type": "resume", "since": 6}]
    assert result["duplicates"] == 4  # the repeated 6, 8 again from the replay, 7 and 8 from the late one
    assert result["restored"] == [0, 2, 0]
    assert result["cursor"] == 9 and result["stored"] == "9" and result["state"] == "live"


def test_client_takes_the_notifications_of_a_batch_frame_in_order(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        const seen = [];
        const c = new NotificationClient({ url: "ws://client.test/ws", userId: 7, since: 2, WebSocket: FakeSocket });
        c.on("notification", (n) => seen.push(n.seq));
        c.connect();
        const ws = FakeSocket.all[0];
        ws.recv(welcome(2), { type: "batch", frames: [note(2), note(3), note(4)] });
        ws.recv({ type: "synced", head_seq: 4, replayed: 2, more: false });
        ws.recv({ type: "batch", frames: [note(5), note(7)] });   // a gap inside a batch is a gap
        const resumes = ws.sent.filter((f) => f.type === "resume");
        return { url: ws.url, seen, duplicates: c.duplicates, cursor: c.cursor, state: c.state, resumes };
        """,
    )
    assert result["url"] == "ws://client.test/ws?since=2&batch=1"
    assert result["seen"] == [3, 4, 5]
    assert result["duplicates"] == 1 and result["cursor"] == 5
    assert result["resumes"] == [{"type": "resume", "since": 5}]


def test_client_passes_expired_seqs_in_a_replay_and_pages_on(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        const seen = [], synced = [];
        const c = new NotificationClient({ url: "ws://client.test/ws", userId: 8, since: 0, WebSocket: FakeSocket });
        c.on("notification", (n) => seen.push(n.seq));
        c.on("synced", (s) => synced.push(s));
        c.connect();
        const ws = FakeSocket.all[0];
        ws.recv(welcome(7), note(1), note(2), note(4));   // 3 has expired
        ws.recv({ type: "synced", head_seq: 7, replayed: 3, more: true });
        const resume = ws.sent.filter((f) => f.type === "resume");
        ws.recv(note(5), note(7), { type: "synced", head_seq: 7, replayed: 2, more: false });  // 6 expired too
        return { seen, resume, synced, cursor: c.cursor, acks: ws.sent.filter((f) => f.type === "ack") };
        """,
    )
    assert result["seen"] == [1, 2, 4, 5, 7]
    assert result["resume"] == [{"type": "resume", "since": 4}]
    assert result["cursor"] == 7
    assert result["synced"] == [{"head_seq": 7, "replayed": 5, "resumed": True, "reconnect": False, "outage": False}]
    assert result["acks"] == [{"type": "ack", "seq": 7}]


def test_client_reconnects_with_backoff_and_resumes_from_its_cursor(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        const states = [];
        const c = new NotificationClient({ url: "ws://client.test/ws", userId: 9, WebSocket: FakeSocket,
                                           backoff: { minMs: 10, baseMs: 40, maxMs: 80 } });
        c.on("state", (s) => states.push(s.state + (s.retryIn === null ? "" : `:${s.retryIn}`)));
        c.connect();
        FakeSocket.all[0].recv(welcome(3, 1), note(4));
        FakeSocket.all[0].end(1012);                       // server restarting
        await until(() => FakeSocket.all.length === 2);
        FakeSocket.all[1].end(1006);                       // refused
        await until(() => FakeSocket.all.length === 3);
        const third = FakeSocket.all[2];
        third.recv(welcome(5, 2), note(5), { type: "synced", head_seq: 5, replayed: 1, more: false });
        return { urls: FakeSocket.all.map((s) => s.url), states, attempt: c.attempt, unread: c.unread, cursor: c.cursor };
        """,
    )
    assert result["urls"] == [
        "ws://client.test/ws?batch=1",
        "ws://client.test/ws?since=4&batch=1",
        "ws://client.test/ws?since=4&batch=1",
    ]
    assert result["states"][:2] == ["connecting", "live"]
    assert "offline:1" in result["states"]  # "reconnecting in 1 s"
    assert result["states"][-2:] == ["syncing", "live"]
    assert result["attempt"] == 0 and result["unread"] == 2 and result["cursor"] == 5


def test_client_stops_on_4401_and_keeps_the_backoff_within_full_jitter_bounds(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        const events = [];
        const c = new NotificationClient({ url: "ws://client.test/ws", WebSocket: FakeSocket });
        c.on("unauthenticated", (e) => events.push(e.code));
        c.connect();
        FakeSocket.all[0].end(4401);
        await new Promise((r) => setTimeout(r, 300));
        const afterLogout = { sockets: FakeSocket.all.length, state: c.state, events };

        // Full jitter: the n-th wait is uniform in [minMs, min(max, base * 2^n)).
        const waits = [];
        const d = new NotificationClient({ url: "ws://client.test/ws", WebSocket: FakeSocket,
                                           backoff: { minMs: 250, baseMs: 1000, maxMs: 8000 } });
        const realTimeout = window.setTimeout, realRandom = Math.random;
        window.setTimeout = (fn, ms) => { if (ms >= 250) waits.push(ms); return 0; };
        for (const r of [0.999, 0.999, 0.999, 0.999, 0.999, 0.0, 0.5]) { Math.random = () => r; d._scheduleReconnect(1006); }
        d._scheduleReconnect(4429);
        window.setTimeout = realTimeout; Math.random = realRandom; d.close();
        return { afterLogout, waits };
        """,
    )
    assert result["afterLogout"] == {"sockets": 1, "state": "offline", "events": [4401]}
    waits = [round(w) for w in result["waits"]]
    assert waits[:5] == [999, 1998, 3996, 7992, 7992]  # doubling ceiling, capped
    assert waits[5] == 250  # never below minMs
    assert waits[6] == 4125  # half way between minMs and the capped ceiling
    assert waits[7] >= 5000  # rate limited: at least rateLimitedMs


def test_client_acks_in_batches_counts_unread_and_settles_requests(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        const counts = [];
        const c = new NotificationClient({ url: "ws://client.test/ws", userId: 10, since: 2, WebSocket: FakeSocket, ackDelayMs: 50 });
        c.on("unreadcount", (e) => counts.push(e.unread));
        c.connect();
        const ws = FakeSocket.all[0];
        ws.recv(welcome(4, 2), note(3), note(4), { type: "synced", head_seq: 4, replayed: 2, more: false });
        ws.recv(note(5), note(6, { read: true }), note(7));
        await until(() => ws.sent.filter((f) => f.type === "ack").length === 2);
        const read = c.markRead([1005]);
        const readRef = ws.sent.at(-1).ref;
        ws.recv({ type: "reply", ref: readRef, ok: true, unread: 3 }, { type: "read", ids: [1005], unread: 3 });
        const bad = c.subscribe("nope");
        ws.recv({ type: "reply", ref: ws.sent.at(-1).ref, ok: false, error: "not_found", message: "no topic" });
        const outcome = await Promise.allSettled([read, bad]);
        return { acks: ws.sent.filter((f) => f.type === "ack"), counts, readFrame: ws.sent.find((f) => f.type === "read"),
                 outcome: outcome.map((o) => o.status) };
        """,
    )
    # One cumulative ack at the end of the replay, one for the live batch.
    assert result["acks"] == [{"type": "ack", "seq": 4}, {"type": "ack", "seq": 7}]
    # welcome said 2 (seqs 3 and 4 included); 5 and 7 are new and unread; 6 arrived read; then a read elsewhere.
    assert result["counts"] == [2, 3, 4, 3]
    assert result["readFrame"]["ids"] == [1005]
    assert result["outcome"] == ["fulfilled", "rejected"]


def test_client_resets_on_reset_resumes_behind_a_heartbeat_and_starts_from_its_stored_cursor(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        const events = [];
        const c = new NotificationClient({ url: "ws://client.test/ws", userId: 11, since: 3, WebSocket: FakeSocket });
        for (const name of ["reset", "unread", "synced"]) c.on(name, (e) => events.push([name, e.head_seq ?? e.unread]));
        c.connect();
        const ws = FakeSocket.all[0];
        ws.recv(welcome(900), { type: "reset", reason: "retention", head_seq: 900 });
        const afterReset = { cursor: c.cursor, state: c.state };
        ws.recv({ type: "heartbeat", head_seq: 902, unread: 5 });    // behind the head: ask
        const resume = ws.sent.filter((f) => f.type === "resume");
        ws.recv(note(901), note(902), { type: "synced", head_seq: 902, replayed: 2, more: false });
        ws.recv(change(903, "unread", { ids: [1901] }, 6));
        c.close();
        // A client without an explicit since starts from the cursor stored for its user.
        const again = new NotificationClient({ url: "ws://client.test/ws", userId: 11, WebSocket: FakeSocket });
        again.connect();
        const url = FakeSocket.all.at(-1).url;
        again.close();
        return { afterReset, resume, events, unread: c.unread, url, closedState: c.state };
        """,
    )
    assert result["afterReset"] == {"cursor": 900, "state": "live"}
    assert result["resume"] == [{"type": "resume", "since": 900}]
    assert result["events"] == [["reset", 900], ["synced", 902], ["unread", 903]]
    assert result["unread"] == 6 and result["closedState"] == "offline"
    assert result["url"] == "ws://client.test/ws?since=903&batch=1"


def test_client_unread_count_is_exact_when_a_read_mark_and_a_publish_cross(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        const c = new NotificationClient({ url: "ws://client.test/ws", userId: 12, since: 5, WebSocket: FakeSocket });
        c.connect();
        const ws = FakeSocket.all[0];
        const counts = [];
        ws.recv(welcome(5, 2), { type: "synced", head_seq: 5, replayed: 0, more: false });
        counts.push(c.unread);
        const read = c.markRead([1001]);
        // Seq 6 was published while the read mark was on its way: the mark is seq 7, and its
        // reply, which covers both, comes before either of them.
        ws.recv({ type: "reply", ref: ws.sent.at(-1).ref, ok: true, op: "read", seq: 7, unread: 2, unseen: 3, head_seq: 7 });
        counts.push(c.unread);
        ws.recv(note(6));                                              // already in the reply's count
        counts.push(c.unread);
        // Another device's change at seq 8 said 3; our reply for seq 9 came first and said 1: the older count is stale.
        ws.recv({ type: "reply", ref: "other-tab", ok: true, unread: 1, unseen: 1, head_seq: 9 });
        ws.recv(change(7, "read", { ids: [1001] }, 2, 3), change(8, "unread", { ids: [1001] }, 3, 3));
        counts.push(c.unread);
        ws.recv({ type: "heartbeat", head_seq: 9, unread: 1, unseen: 1 });
        counts.push(c.unread, c.unseen);
        await read;
        c.close();
        return counts;
        """,
    )
    assert result == [2, 2, 2, 1, 1, 1]


def test_client_applies_state_events_in_seq_order_and_keeps_its_inbox_and_counts(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        const changes = [], legacy = [], unseen = [];
        const c = new NotificationClient({ url: "ws://client.test/ws", userId: 13, since: 2, WebSocket: FakeSocket });
        c.on("change", (e) => changes.push([e.op, e.seq, e.changed.map((i) => i.id), e.removed, e.unknown]));
        c.on("read", (e) => legacy.push(["read", e.ids ?? e.up_to_seq]));
        c.on("unseencount", (e) => unseen.push(e.unseen));
        c.connect();
        const ws = FakeSocket.all[0];
        ws.recv(welcome(2, 2, 2), { type: "synced", head_seq: 2, replayed: 0, more: false });
        ws.recv(note(3, { kind: "build.failed" }), note(4, { topic: "deploys" }));
        // A state event past a gap is held like a notification, then taken in order once the gap is filled.
        ws.recv(change(6, "archive", { ids: [1003] }, 2, 3));
        const heldAt = changes.length;
        const byKind = change(5, "read", { filter: { kind: "build" }, up_to_seq: 4 }, 3, 4);
        ws.recv(byKind, change(5, "read", { filter: {}, up_to_seq: 4 }, 3, 4));
        ws.recv({ type: "synced", head_seq: 6, replayed: 2, more: false });
        ws.recv(change(7, "seen", { up_to_seq: 7 }, 2, 0));
        ws.recv(change(8, "snooze", { ids: [1004, 999], until: "2030-01-01T00:00:00+00:00" }, 1, 0));
        ws.recv(change(9, "read", { filter: {}, up_to_seq: 8 }, 0, 0));
        ws.recv(note(10, { id: 1004 }));                             // the snooze woke: same id, new seq
        ws.recv(change(11, "delete", { filter: { topic: "nope" }, up_to_seq: 10 }, 1, 1));
        const items = c.inbox.items().map((i) => [i.id, i.seq, i.read, i.archived, i.snoozed_until]);
        return { heldAt, changes, legacy, unseen, items, unread: c.unread, cursor: c.cursor, seenSeq: c.inbox.seenSeq,
                 resumes: ws.sent.filter((f) => f.type === "resume"), duplicates: c.duplicates };
        """,
    )
    assert result["heldAt"] == 0 and result["resumes"] == [{"type": "resume", "since": 4}]
    assert result["duplicates"] == 1  # the second seq 5
    assert result["changes"] == [
        ["read", 5, [1003], [], []],
        ["archive", 6, [1003], [], []],
        ["seen", 7, [], [], []],
        ["snooze", 8, [1004], [], [999]],
        ["read", 9, [], [], []],  # the inbox holds nothing now: 1003 is archived, 1004 snoozed
        ["wake", 10, [1004], [], []],
        ["delete", 11, [], [], []],
    ]
    assert result["legacy"] == [["read", [1003]], ["read", 8]]  # a filter by kind names what it took
    assert result["items"] == [[1004, 10, False, False, None], [1003, 3, True, True, None]]
    assert result["unread"] == 1 and result["cursor"] == 11 and result["seenSeq"] == 7
    assert result["unseen"] == [2, 3, 4, 3, 0, 1]
