"""One socket per browser: the tabs of a user elect a leader that holds the socket and relays it.

In headless Chromium against a real daphne process (three dashboard tabs, the
leader closed mid-stream), and client.js alone against a scripted socket
(relay, a tab behind the leader, the election without Web Locks, the jitter
of the first reconnect). Fixtures and helpers come from test_e2e_browser.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests import test_e2e_browser as e2e
from tests.conftest import DaphneServer
from tests.test_e2e_browser import Api, create_user, expect_live, items, log_in, run_js

pytestmark = pytest.mark.browser

# The fixtures of test_e2e_browser, used here by name.
api, browser, new_context, client_page = e2e.api, e2e.browser, e2e.new_context, e2e.client_page

# Without Web Locks (older browsers) the tabs elect a leader over the BroadcastChannel alone.
NO_WEB_LOCKS = "delete Navigator.prototype.locks;"


@pytest.fixture
def daphne(daphne_factory: Any) -> DaphneServer:
    # Unbuffered, so that its access log (a WSCONNECT line per socket) can be read while it runs.
    return daphne_factory(PYTHONUNBUFFERED="1")


def socket_lines(server: DaphneServer, offset: int) -> tuple[int, int]:
    """WebSockets opened and closed since `offset` in the server's access log."""
    text = server.log.read_bytes()[offset:].decode(errors="replace")
    return text.count('"WSCONNECT /ws/notifications/"'), text.count('"WSDISCONNECT /ws/notifications/"')


def reported_sockets(user_id: int, after: float) -> int | None:
    """The user's sockets as the server processes report them to Redis; None until every report is newer than `after`."""
    from notifications import presence

    reports = presence.reports()
    if not reports or any(r.at <= after for r in reports):
        return None
    return sum(r.users.get(user_id, 0) for r in reports)


def poll(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    # The access log is a file and presence a report every 5 s: there is no event to wait on.
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def roles(pages: list[Page]) -> list[str]:
    return sorted(page.evaluate("window.notifyClient.role") for page in pages)


def seqs_shown(page: Page) -> list[int]:
    return [int(s) for s in items(page).evaluate_all("els => els.map(e => e.dataset.seq)")]


@pytest.mark.server
@pytest.mark.parametrize("election", ["web-locks", "broadcast-channel"])
def test_three_tabs_share_one_socket_and_lose_nothing_when_the_leader_closes(
    election: str, daphne: DaphneServer, api: Api, new_context: Callable[[], BrowserContext]
) -> None:
    alice = create_user("alice")
    context = new_context()
    if election == "broadcast-channel":
        context.add_init_script(NO_WEB_LOCKS)
    log_offset = daphne.log.stat().st_size
    tabs = [log_in(context, daphne, "alice")]
    for _ in range(2):
        tab = context.new_page()
        tab.goto(f"{daphne.url}/inbox/")
        expect_live(tab)
        tabs.append(tab)
    for tab in tabs:
        # Every notification the client hands over, not only what the list shows (it also keys items by id).
        tab.evaluate("() => { window.seen = []; window.notifyClient.on('notification', (n) => window.seen.push(n.seq)); }")
    assert roles(tabs) == ["follower", "follower", "leader"]
    assert socket_lines(daphne, log_offset) == (1, 0)
    all_live = time.time()
    poll(lambda: reported_sockets(alice, after=all_live) == 1, "one socket for alice in the presence reports")

    titles = [f"before {i}" for i in range(5)]
    for title in titles:
        api.publish(title, users=[alice])
    for tab in tabs:
        expect(items(tab)).to_have_count(5)

    # Close the leader while notifications are being published: before, during and after.
    leader = next(tab for tab in tabs if tab.evaluate("window.notifyClient.role") == "leader")
    during = [f"during {i:02d}" for i in range(20)]
    some_published, failed = threading.Event(), threading.Event()

    def publisher() -> None:
        for i, title in enumerate(during):
            api.publish(title, users=[alice])
            if i == 4:
                some_published.set()
            # Pace the stream so that it spans the takeover (a rate, not a wait for anything).
            failed.wait(0.05)

    thread = threading.Thread(target=publisher)
    thread.start()
    try:
        assert some_published.wait(30)
        leader.close()
        closed_at = time.time()
    except BaseException:
        failed.set()
        raise
    finally:
        thread.join(30)
    after = [f"after {i}" for i in range(5)]
    for title in after:
        api.publish(title, users=[alice])

    remaining = [tab for tab in tabs if tab is not leader]
    everything = list(range(1, len(titles) + len(during) + len(after) + 1))
    for tab in remaining:
        expect_live(tab)
        expect(items(tab)).to_have_count(len(everything))
        assert seqs_shown(tab) == everything[::-1]
        assert tab.evaluate("window.seen") == everything  # once each, in order
    assert roles(remaining) == ["follower", "leader"]
    poll(lambda: socket_lines(daphne, log_offset) == (2, 1), "the old leader's socket closed and one new one opened")
    poll(lambda: reported_sockets(alice, after=closed_at) == 1, "one socket for alice again in the presence reports")


# --- client.js alone: two clients of one page are two tabs to each other ------------------------------

SHARED = "{ url: 'ws://client.test/ws', WebSocket: FakeSocket, shareAcrossTabs: true }"


def test_a_follower_gets_the_leaders_frames_sends_through_it_and_takes_over(client_page: Page) -> None:
    result = run_js(
        client_page,
        f"""
        const options = {{ ...{SHARED}, userId: 20, since: 3 }};
        const seen = {{ a: [], b: [] }};
        const a = new NotificationClient(options), b = new NotificationClient(options);
        a.on("notification", (n) => seen.a.push(n.seq));
        b.on("notification", (n) => seen.b.push(n.seq));
        a.connect();
        await until(() => FakeSocket.all.length === 1);
        b.connect();
        await until(() => b._tabs.leader === a._tabs.id);
        const ws = FakeSocket.all[0];
        ws.recv(welcome(5, 2), note(4), note(5), {{ type: "synced", head_seq: 5, replayed: 2, more: false }});
        await until(() => b.state === "live" && seen.b.length === 2);
        ws.recv(note(5), note(6));                                 // a duplicate, then a live one
        await until(() => seen.b.length === 3);
        const read = b.markRead([1004]);
        await until(() => ws.sent.some((f) => f.type === "read"));
        const readFrame = ws.sent.find((f) => f.type === "read");
        ws.recv({{ type: "reply", ref: readFrame.ref, ok: true, unread: 2 }}, {{ type: "read", ids: [1004], unread: 2 }});
        await read;
        const before = {{ roles: [a.role, b.role], unread: b.unread }};

        a.close();                                                 // the leader's tab goes away
        await until(() => FakeSocket.all.length === 2);
        const next = FakeSocket.all[1];
        next.recv(welcome(8, 3), note(7), note(8), {{ type: "synced", head_seq: 8, replayed: 2, more: false }});
        await until(() => b.state === "live" && seen.b.length === 5);
        b.close();
        return {{ seen, before, readFrame, url: next.url, role: b.role, duplicates: b.duplicates,
                  sockets: FakeSocket.all.length, stored: localStorage.getItem("notifications:cursor:20") }};
        """,
    )
    assert result["before"]["roles"] == ["leader", "follower"]
    assert result["seen"]["a"] == [4, 5, 6]
    assert result["seen"]["b"] == [4, 5, 6, 7, 8]
    assert result["duplicates"] == 1
    assert result["readFrame"]["ids"] == [1004]  # sent by the follower, through the leader's socket
    assert result["before"]["unread"] == 2
    assert result["url"] == "ws://client.test/ws?since=6&batch=1"  # the new leader resumes from its cursor
    assert result["sockets"] == 2 and result["stored"] == "8"


def test_a_tab_behind_the_leader_asks_its_own_replay_and_passes_an_expired_hole(client_page: Page) -> None:
    result = run_js(
        client_page,
        f"""
        const seen = {{ a: [], b: [] }}, synced = [];
        const a = new NotificationClient({{ ...{SHARED}, userId: 21, since: 3 }});
        a.on("notification", (n) => seen.a.push(n.seq));
        a.connect();
        await until(() => FakeSocket.all.length === 1);
        const ws = FakeSocket.all[0];
        ws.recv(welcome(5), note(4), note(5), {{ type: "synced", head_seq: 5, replayed: 2, more: false }});
        // This page was rendered at seq 1: the leader is past it.
        const b = new NotificationClient({{ ...{SHARED}, userId: 21, since: 1 }});
        b.on("notification", (n) => seen.b.push(n.seq));
        b.on("synced", (s) => synced.push(s.replayed));
        b.connect();
        await until(() => ws.sent.some((f) => f.type === "resume"));
        const resume = ws.sent.find((f) => f.type === "resume");
        // 3 has expired: the replay skips it. The leader's reply says the replay has been sent.
        ws.recv(note(2), note(4), note(5), {{ type: "synced", head_seq: 5, replayed: 3, more: false }});
        ws.recv({{ type: "reply", ref: resume.ref, ok: true }});
        await until(() => b.state === "live");
        ws.recv(note(6));
        await until(() => seen.b.length === 4 && seen.a.length === 3);
        a.close(); b.close();
        return {{ seen, resume, synced, state: b.state }};
        """,
    )
    assert result["resume"]["since"] == 1 and result["resume"]["ref"]
    assert result["seen"]["b"] == [2, 4, 5, 6]
    assert result["seen"]["a"] == [4, 5, 6]
    assert result["synced"] == [3]


def test_without_web_locks_the_tabs_elect_over_the_channel_and_the_older_tab_wins(client_page: Page) -> None:
    result = run_js(
        client_page,
        f"""
        {NO_WEB_LOCKS}
        const a = new NotificationClient({{ ...{SHARED}, userId: 22, since: 0 }});
        a.connect();
        await until(() => a.role === "leader" && FakeSocket.all.length === 1);
        const b = new NotificationClient({{ ...{SHARED}, userId: 22, since: 0 }});
        b.connect();
        await until(() => b._tabs.leader === a._tabs.id);
        a.close();                                        // it resigns; b claims
        await until(() => b.role === "leader" && FakeSocket.all.length === 2);
        b.close();

        // Two tabs that claim at once: the older one leads, the other steps down and closes its socket.
        const c = new NotificationClient({{ ...{SHARED}, userId: 23, since: 0 }});
        const d = new NotificationClient({{ ...{SHARED}, userId: 23, since: 0 }});
        c.connect(); d.connect();
        await until(() => [c.role, d.role].sort().join() === "follower,leader");
        const [older, newer] = c._tabs.id < d._tabs.id ? [c, d] : [d, c];
        const open = FakeSocket.all.slice(2).filter((s) => s.readyState !== 3).length;
        const result = {{ roles: [older.role, newer.role], open }};
        c.close(); d.close();
        return result;
        """,
    )
    assert result["roles"] == ["leader", "follower"]
    assert result["open"] == 1


def test_the_first_reconnect_after_a_drop_is_spread_over_the_base_delay(client_page: Page) -> None:
    result = run_js(
        client_page,
        """
        // A server draining with 1012, then a socket cut (1006): each first retry after a welcome.
        const waits = [];
        const realTimeout = window.setTimeout, realRandom = Math.random;
        for (const code of [1012, 1006]) {
          for (const r of [0, 0.1, 0.5, 0.999]) {
            const c = new NotificationClient({ url: "ws://client.test/ws", WebSocket: FakeSocket });
            c.connect();
            FakeSocket.all.at(-1).recv(welcome(1));
            window.setTimeout = (fn, ms) => { waits.push([code, ms]); return 0; };
            Math.random = () => r;
            FakeSocket.all.at(-1).end(code);
            window.setTimeout = realTimeout; Math.random = realRandom;
            c.close();
          }
        }
        return waits;
        """,
    )
    # Uniform over [minMs, baseMs) = [250, 1000): no share of the clients piled at minMs.
    expected = [250, 325, 625, 999]
    assert [(code, int(ms)) for code, ms in result] == [(1012, ms) for ms in expected] + [(1006, ms) for ms in expected]
