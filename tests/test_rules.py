"""notifications/rules.py: the URL rule, slugs and bounds, and the copy of the URL rule in dashboard.js."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Route, sync_playwright
from pydantic import TypeAdapter, ValidationError

from notifications import protocol, rules, schemas
from tests.conftest import ROOT

LINKS = [
    "https://example.com/a",
    "http://example.com",
    "HTTPS://EXAMPLE.COM/x",
    "https://user@example.com:8443/p?q=1#f",
    "/builds/1",
    "/",
    "/a/b?c=d#e",
    "/%2F%2Fevil.example",
]
NOT_LINKS = [
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    " javascript:alert(1)",
    "vbscript:x",
    "data:text/html,x",
    "mailto:a@example.com",
    "ftp://example.com/",
    "//evil.example/x",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example/phish",  # the browser drops the tab: "//evil.example/phish"
    "/\n/evil.example",
    "/\r/evil.example",
    "\t/x",
    " /x",
    "/x ",
    "/a b",
    "/x\x00",
    "/x\x1f",
    "/x\x7f",
    "/x\x85",
    "/\u00a0/evil.example",
    "/\u2028/evil.example",
    "/\ufeff/evil.example",
    "https://",
    "http:///x",
    "https:/x",
    "http:evil.example",
    "https:\\\\evil.example",
    "https://ex ample.com",
    "http\u017f://evil.example",  # Python's re.IGNORECASE would take the long s for "s"
    "builds/1",
    "?x=1",
    "#top",
]
CASES = ["", *LINKS, *NOT_LINKS]


@pytest.mark.parametrize("url", ["", *LINKS])
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


# --- dashboard.js's copy of the rule -----------------------------------------------------------

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
def test_dashboard_js_safe_link_follows_the_python_rule(dashboard_page: Page) -> None:
    js = dashboard_page.evaluate(
        "async (cases) => { const { safeLink } = await import('/dashboard.js'); return cases.map(safeLink); }", CASES
    )
    assert dict(zip(CASES, js, strict=True)) == {url: rules.link(url) for url in CASES}
