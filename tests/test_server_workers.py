"""--workers (notifications/supervisor.py): real server processes sharing one port, drained and replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection

from notifications import presence, protocol, services, supervisor
from notifications.client import Client, Listener
from tests.conftest import KILLS_AGAINST_THE_CLOCK, ROOT, DaphneServer, free_port
from tests.test_faults_nodes import collect, until
from tests.test_server_limits import connect, notifications_until, notifications_until_closed

pytestmark = [
    pytest.mark.server,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("close_thread_connections"),
    KILLS_AGAINST_THE_CLOCK,
]

TIMEOUT = 30.0
SOCKETS = 24  # one at a time, each taken by whichever worker accepts first: enough for both to get some


def children(server: DaphneServer) -> set[int]:
    assert server.proc is not None
    return {int(pid) for pid in Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()}


async def connections_by_pid(expected_total: int, pids: set[int]) -> dict[int, int]:
    """The open sockets of each of these server processes, from the presence reports (every few seconds), once they count them all."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            reports = {int(r.node.split(":")[1]): r.connections for r in await sync_to_async(presence.reports)()}
            ours = {pid: count for pid, count in reports.items() if pid in pids and count}
            if sum(ours.values()) == expected_total:
                return ours
            await asyncio.sleep(0.2)


async def sockets_on_both(server: DaphneServer, make_user: Any, token_for: Any) -> tuple[list[Any], list[ClientConnection], dict[int, int]]:
    users = [await sync_to_async(make_user)() for _ in range(SOCKETS)]
    sockets = [await connect(server, await sync_to_async(token_for)(u)) for u in users]
    by_pid = await connections_by_pid(SOCKETS, children(server))
    assert len(by_pid) == 2, by_pid
    return users, sockets, by_pid


@pytest.fixture
def workers(daphne_factory: Any) -> DaphneServer:
    """Two workers, both listening (each logs it as it starts)."""
    server: DaphneServer = daphne_factory(NOTIFY_WORKERS="2", NOTIFY_DRAIN_SECONDS="1")
    wait_listening(server, 2)
    return server


def wait_listening(server: DaphneServer, count: int) -> None:
    """Until `count` server processes have logged that they listen (a log file has no event to wait on)."""
    deadline = time.monotonic() + TIMEOUT
    while server.log.read_text().count(" listening on ") < count:
        assert time.monotonic() < deadline, server.log.read_text()[-2000:]
        time.sleep(0.05)


async def test_two_workers_serve_sockets_on_one_port_and_a_publish_reaches_both(
    workers: DaphneServer, make_user: Any, token_for: Any
) -> None:
    users, sockets, _ = await sockets_on_both(workers, make_user, token_for)
    await sync_to_async(services.notify)(recipient_ids=[u.id for u in users], content=services.Content(title="to all"))
    for ws in sockets:
        assert await notifications_until(ws, 1) == [1]
        await ws.close()


async def test_sigterm_to_the_parent_drains_every_worker_with_1012_and_it_exits_0(
    workers: DaphneServer, make_user: Any, token_for: Any
) -> None:
    _, sockets, _ = await sockets_on_both(workers, make_user, token_for)
    assert workers.proc is not None
    workers.proc.send_signal(signal.SIGTERM)
    closes = await asyncio.gather(*(notifications_until_closed(ws) for ws in sockets))
    assert {code for _, code in closes} == {protocol.CLOSE_SERVER_RESTARTING}
    assert await asyncio.to_thread(workers.proc.wait, 15) == 0
    with pytest.raises(OSError):
        await websockets.connect(workers.ws_url, open_timeout=2)
    assert "Traceback" not in workers.log.read_text()


async def test_a_killed_worker_is_replaced_and_the_other_workers_sockets_stay_up(
    workers: DaphneServer, make_user: Any, token_for: Any
) -> None:
    users, sockets, by_pid = await sockets_on_both(workers, make_user, token_for)
    killed, survivor = sorted(by_pid)
    os.kill(killed, signal.SIGKILL)
    await asyncio.to_thread(wait_listening, workers, 3)  # the two, then the replacement
    (replacement,) = children(workers) - {survivor}

    # The survivor's sockets were not touched: the same connections get the next publish; the killed one's are gone.
    await sync_to_async(services.notify)(recipient_ids=[u.id for u in users], content=services.Content(title="after"))
    outcomes = await asyncio.gather(*(notifications_until(ws, 1) for ws in sockets), return_exceptions=True)
    assert sum(seqs == [1] for seqs in outcomes) == by_pid[survivor]
    assert sum(isinstance(seqs, websockets.ConnectionClosed) for seqs in outcomes) == by_pid[killed]

    # The port keeps serving, and the replacement is a whole server that takes its share.
    more = [await connect(workers, await sync_to_async(token_for)(u)) for u in users]
    assert set(await connections_by_pid(by_pid[survivor] + len(more), {survivor, replacement})) == {survivor, replacement}
    for ws in sockets + more:
        await ws.close()


def test_workers_come_from_the_option_or_notify_workers_and_auto_is_the_cores() -> None:
    assert supervisor.workers_option(["--workers", "3", "app"], {}) == (3, ["app"])
    assert supervisor.workers_option(["-p", "80", "app"], {"NOTIFY_WORKERS": "2"}) == (2, ["-p", "80", "app"])
    assert supervisor.workers_option(["app"], {}) == (1, ["app"])
    assert supervisor.workers_option(["app"], {"NOTIFY_WORKERS": "auto"}) == (os.cpu_count(), ["app"])
    with pytest.raises(SystemExit, match="or auto"):
        supervisor.workers_option(["--workers", "0", "app"], {})


def test_more_than_one_worker_needs_redis_and_a_tcp_port() -> None:
    with pytest.raises(SystemExit, match="REDIS_URL"):
        supervisor.plan(2, ["-p", "80", "app"], {})
    with pytest.raises(SystemExit, match="TCP port"):
        supervisor.plan(2, ["-u", "/tmp/s", "app"], {"REDIS_URL": "redis://x"})
    plan = supervisor.plan(2, ["-b", "0.0.0.0", "-p", "80", "--proxy-headers", "app"], {"REDIS_URL": "redis://x"})
    assert (plan.host, plan.port, plan.daphne_args) == ("0.0.0.0", 80, ["--proxy-headers", "app"])


def test_a_worker_that_cannot_start_stops_the_parent_instead_of_being_restarted_forever() -> None:
    env = {**os.environ, "NOTIFY_WORKERS": "2", "DJANGO_LOG_LEVEL": "WARNING"}
    cmd = [sys.executable, "-m", supervisor.SERVER_MODULE, "-b", "127.0.0.1", "-p", str(free_port()), "no_such_module:application"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "exited with 1 as it started: stopping" in done.stderr
    # Each worker tried at most once: none was started again. (The other one may be stopped before it fails on its own.)
    assert 1 <= done.stderr.count("No module named 'no_such_module'") <= 2


async def test_sighup_restarts_the_workers_one_at_a_time_while_the_port_keeps_serving_and_nothing_is_lost(
    workers: DaphneServer, make_user: Any, token_for: Any
) -> None:
    """A deploy on one host: new workers listen before the old ones drain; every client resumes, losing and repeating nothing."""
    users = [await sync_to_async(make_user)() for _ in range(12)]
    publisher = Client(workers.url, await sync_to_async(token_for)(await sync_to_async(make_user)("publisher-svc"), ("publish",)))
    listeners = [
        Listener(
            workers.ws_url,
            token=await sync_to_async(token_for)(u, ("read",)),
            since=0,
            ack_interval=0.1,
            backoff_base=0.05,
            backoff_max=0.5,
        )
        for u in users
    ]
    received: list[list[int]] = [[] for _ in listeners]
    collectors = [asyncio.create_task(collect(listener, into)) for listener, into in zip(listeners, received, strict=True)]
    old = children(workers)
    try:
        await until(lambda: all(listener.state == "live" for listener in listeners), lambda: "every listener live")
        assert workers.proc is not None
        workers.proc.send_signal(signal.SIGHUP)
        for n in range(10):  # published while the workers are replaced
            await asyncio.to_thread(publisher.publish, users=[u.id for u in users], title=f"n{n}")
        # Both old workers gone, two new ones in their place; the parent never stopped.
        await until(lambda: len(children(workers)) == 2 and not children(workers) & old, lambda: f"children {children(workers)}, old {old}")
        assert workers.proc.poll() is None
        # The port accepted all along: a new client comes up at once.
        late = await connect(workers, await sync_to_async(token_for)(users[0]))
        await late.close()
        await until(lambda: all(len(got) >= 10 for got in received), lambda: f"every listener caught up: {[len(g) for g in received]}")
    finally:
        for listener in listeners:
            await listener.close()
        await asyncio.gather(*collectors, return_exceptions=True)
    assert all(got == list(range(1, 11)) for got in received), received
    assert all(listener.connections >= 2 for listener in listeners)  # each was moved to a new worker
    assert "restart done" in workers.log.read_text()
