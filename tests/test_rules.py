"""notifications/rules.py: the URL rule, slugs and bounds; and the URL rule's other homes (links.js, which the
dashboard and the service worker import, and the Web Push payload) on the same table of cases."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Page, Route, sync_playwright
from pydantic import TypeAdapter, ValidationError

from notifications import delivery, protocol, rules, schemas
from notifications.delivery.webpush import payload
from tests.conftest import ROOT

# The one table of URL cases: rules.py, links.js (the page's and the service worker's rule) and the push
# payload are all checked against it, so the three cannot drift apart.
URL_CASES: list[dict[str, Any]] = json.loads((ROOT / "tests" / "safe_url_cases.json").read_text())
LINKS = [c["url"] for c in URL_CASES if c["safe"]]
NOT_LINKS = [c["url"] for c in URL_CASES if not c["safe"]]
CASES = [c["url"] for c in URL_CASES]
EXPECTED = {c["url"]: c["url"] if c["safe"] else "" for c in URL_CASES}


def test_the_table_has_both_kinds_and_the_tab_trick() -> None:
    assert "" in LINKS and "/\t/evil.example" in NOT_LINKS and len(set(CASES)) == len(CASES)


@pytest.mark.parametrize("url", LINKS)
def test_safe_url_keeps_http_urls_and_single_slash_paths(url: str) -> None:
    assert rules.safe_url(url) == url
    assert rules.link(url) == url


@pytest.mark.parametrize("url", NOT_LINKS)
def test_safe_url_refuses_everything_else_with_a_reason(url: str) -> None:
    with pytest.raises(rules.UnsafeUrl, match=r"must"):
        rules.safe_url(url)
    assert rules.link(url) == ""


@pytest.mark.parametrize("slug", ["deploys\n", "deploys ", "", "a" * 65, "bad slug", "dé", "x/y"])
def test_a_slug_is_refused_the_same_way_at_every_edge(slug: str) -> None:
    assert not rules.is_slug(slug)
    with pytest.raises(ValidationError):
        TypeAdapter(schemas.Slug).validate_python(slug)
    with pytest.raises(protocol.FrameError):
        protocol.parse(protocol.encode({"type": "subscribe", "topic": slug}))


def test_a_slug_of_64_letters_digits_dashes_and_underscores_passes() -> None:
    slug = "a-b_C9" + "x" * 58
    assert rules.is_slug(slug)
    assert TypeAdapter(schemas.Slug).validate_python(slug) == slug
    assert protocol.parse(protocol.encode({"type": "subscribe", "topic": slug})) == protocol.Subscribe(slug)


@pytest.mark.parametrize("url", CASES)
def test_the_push_payload_carries_a_link_by_the_same_rule(url: str) -> None:
    item = delivery.Item(1, 1, "title", "", url, "info", "k", None, datetime.now(UTC))
    assert json.loads(payload(item))["url"] == EXPECTED[url]


# --- links.js: the rule in the browser, for the page and the service worker ----------------------

# dashboard.js connects on import: a socket that never opens keeps it quiet.
QUIET_SOCKET = "window.WebSocket = class { constructor() { this.readyState = 0; } send() {} close() {} };"
CONFIG = '<script id="notify-config" type="application/json">{"userId": 1, "headSeq": 0, "unread": 0, "page": "rules", "urls": {}}</script>'


@pytest.fixture
def dashboard_page() -> Iterator[Page]:
    # dashboard.js and every module it imports, as the server would serve them.
    scripts = {path.name: path.read_text() for path in (ROOT / "notifications" / "static" / "notifications").glob("*.js")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"), args=["--no-sandbox"])
        page = browser.new_page()
        page.add_init_script(QUIET_SOCKET)

        def serve(route: Route) -> None:
            name = route.request.url.rsplit("/", 1)[-1]
            if name in scripts:
                route.fulfill(body=scripts[name], content_type="text/javascript")
            else:
                route.fulfill(body=f"<!doctype html><title>rules</title>{CONFIG}", content_type="text/html")

        page.route("http://rules.test/**", serve)
        page.goto("http://rules.test/")
        yield page
        browser.close()


@pytest.mark.browser
def test_links_js_follows_the_python_rule_and_the_dashboard_uses_it(dashboard_page: Page) -> None:
    js = dashboard_page.evaluate("async (cases) => { const { safeLink } = await import('/links.js'); return cases.map(safeLink); }", CASES)
    assert dict(zip(CASES, js, strict=True)) == EXPECTED
    assert "./links.js" in (ROOT / "notifications" / "static" / "notifications" / "dashboard.js").read_text()


# sw.js as the browser runs it, with the service worker's globals it uses stood in for: the push
# handler's link is links.js's, else the inbox.
RUN_SW = """async (cases) => {
  const handlers = {};
  const shown = [];
  const add = self.addEventListener;
  self.addEventListener = (type, handler) => { handlers[type] = handler; };
  self.registration = { showNotification: async (title, options) => { shown.push(options.data.url); } };
  try { await import('/sw.js'); } finally { self.addEventListener = add; }
  for (const url of cases) handlers.push({ data: { json: () => ({ title: "t", url }) }, waitUntil() {} });
  return shown;
}"""


@pytest.mark.browser
def test_the_service_worker_shows_only_a_link_by_the_same_rule(dashboard_page: Page) -> None:
    shown = dashboard_page.evaluate(RUN_SW, CASES)
    assert dict(zip(CASES, shown, strict=True)) == {url: EXPECTED[url] or "/inbox/" for url in CASES}
