"""How a `state` event changes a notification a client holds: the Python client's rule (notifications/client/inbox.py)
and client.js's (inbox-state.js), on one table of cases, tests/state_cases.json, so the two cannot drift apart."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, Route, sync_playwright

from notifications.client import Inbox, Item
from notifications.client import Notification as ClientNotification
from tests.conftest import ROOT

CASES: list[dict[str, Any]] = json.loads((ROOT / "tests" / "state_cases.json").read_text())
STATIC_JS = ROOT / "notifications" / "static" / "notifications"


def held(item: dict[str, Any]) -> Item:
    n = ClientNotification(seq=item["seq"], id=item["id"], title="t", topic=item["topic"], kind=item["kind"], read=item["read"])
    return Item(n, archived=item["archived"], snoozed_until=item["snoozed_until"], answer=item["answer"])


def shown(item: Item | None) -> dict[str, Any] | None:
    if item is None:
        return None
    n = item.notification
    return {
        "id": n.id,
        "seq": n.seq,
        "topic": n.topic,
        "kind": n.kind,
        "read": n.read,
        "archived": item.archived,
        "snoozed_until": item.snoozed_until,
        "answer": item.answer,
    }


def test_the_table_covers_every_op_by_ids_and_by_filter() -> None:
    ops = {(c["event"]["op"], "ids" in c["event"]) for c in CASES}
    assert {(op, True) for op in ("read", "unread", "archive", "unarchive", "delete", "snooze")} <= ops
    assert ("action", False) in ops
    assert {(op, False) for op in ("read", "archive", "unarchive", "delete", "seen")} <= ops


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_python_client_applies_each_case(case: dict[str, Any]) -> None:
    inbox = Inbox()
    inbox.items[case["item"]["id"]] = held(case["item"])
    inbox.apply(case["event"])
    assert shown(inbox.items.get(case["item"]["id"])) == case["after"]


@pytest.fixture
def module_page() -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"), args=["--no-sandbox"])
        page = browser.new_page()

        def serve(route: Route) -> None:
            module = STATIC_JS / route.request.url.rsplit("/", 1)[-1]
            if module.suffix == ".js" and module.is_file():
                route.fulfill(body=module.read_text(), content_type="text/javascript")
            else:
                route.fulfill(body="<!doctype html><title>state</title>", content_type="text/html")

        page.route("http://state.test/**", serve)
        page.goto("http://state.test/")
        yield page
        browser.close()


APPLY_JS = """async (cases) => {
  const { InboxState } = await import('/inbox-state.js');
  return cases.map(({ item, event }) => {
    const inbox = new InboxState();
    inbox.load([item]);
    inbox.apply(event);
    const after = inbox.get(item.id);
    return after && { id: after.id, seq: after.seq, topic: after.topic, kind: after.kind, read: after.read,
                      archived: after.archived, snoozed_until: after.snoozed_until, answer: after.answer };
  });
}"""


@pytest.mark.browser
def test_client_js_applies_every_case_the_same(module_page: Page) -> None:
    got = module_page.evaluate(APPLY_JS, CASES)
    assert {c["name"]: a for c, a in zip(CASES, got, strict=True)} == {c["name"]: c["after"] for c in CASES}
