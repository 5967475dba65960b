"""PostgreSQL stopped and started under a running daphne: 503s and 4503 at once, open sockets kept, recovery alone.

The outage is real and bounded: a throwaway PostgreSQL cluster of this test's
own, on a free loopback port, never the machine's main one.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import OperationalError
from psycopg_pool import PoolTimeout
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from notifications import availability
from notifications.protocol import CLOSE_UNAVAILABLE
from tests.conftest import ROOT, DaphneServer, free_port

pytestmark = [pytest.mark.server]

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
FAST = 3.0  # seconds: "at once", with room for a busy shared machine
RECOVERY = 8.0  # seconds from PostgreSQL's return to the first 201


class Cluster:
    """A PostgreSQL cluster in a temporary directory, run as the postgres user (initdb refuses root)."""

    def __init__(self) -> None:
        self.bin = Path(INITDB[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="pg-fault-"))
        self.port = free_port()
        shutil.chown(self.dir, "postgres")

    def run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self.run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if not INITDB:
        if os.environ.get("CI"):
            pytest.fail("initdb not found: install PostgreSQL's server binaries (postgresql package)")
        pytest.skip("initdb not found under /usr/lib/postgresql/*/bin (set CI to make this a failure)")
    cluster = Cluster()
    cluster.init()
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop()
        shutil.rmtree(cluster.dir, ignore_errors=True)


def manage(database_url: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120
    ).stdout


@pytest.fixture
def served(cluster: Cluster, channel_prefix: str) -> Iterator[tuple[DaphneServer, str]]:
    """A daphne on the throwaway cluster, and a token (publish, read) for a user there."""
    cluster.run(str(cluster.bin / "createdb"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "faults")
    url = cluster.url("faults")
    manage(url, "migrate", "--verbosity", "0")
    script = (
        "from django.contrib.auth import get_user_model; from notifications import auth; "
        "u = get_user_model().objects.create_user('dora'); print(auth.issue_token(user=u, scopes=['publish', 'read']).secret)"
    )
    token = manage(url, "shell", "-c", script).strip().splitlines()[-1]
    server = DaphneServer(channel_prefix, {"DATABASE_URL": url})
    try:
        yield server.start(), token
    finally:
        server.stop()


def publish(server: DaphneServer, token: str, title: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    body = json.dumps({"users": ["dora"], "title": title}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"{server.url}/api/v1/notifications", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_postgres_down_then_back_under_a_running_node(served: tuple[DaphneServer, str], cluster: Cluster) -> None:
    server, token = served
    auth = {"Authorization": f"Bearer {token}"}
    assert publish(server, token, "before")[0] == 201
    with connect(server.ws_url, additional_headers=auth, open_timeout=10) as kept:
        assert json.loads(kept.recv(10))["type"] == "welcome"

        cluster.stop()
        for i in range(3):
            started = time.monotonic()
            status, headers, body = publish(server, token, f"during {i}")
            assert (status, body["code"]) == (503, "unavailable")
            assert int(headers["Retry-After"]) >= 1
            assert time.monotonic() - started < FAST

        started = time.monotonic()
        with connect(server.ws_url, additional_headers=auth, open_timeout=FAST) as refused, pytest.raises(ConnectionClosed) as closed:
            refused.recv(FAST)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_UNAVAILABLE
        assert time.monotonic() - started < FAST

        kept.send(json.dumps({"type": "ping", "ref": "p"}))
        assert _next(kept, "pong")["ref"] == "p"

        cluster.start()
        back = time.monotonic()
        while publish(server, token, "after")[0] != 201:
            assert time.monotonic() - back < RECOVERY, f"no 201 within {RECOVERY}s of PostgreSQL's return"
            time.sleep(0.1)  # a poll interval, as a client honouring a short Retry-After would
        # The socket kept through the outage hears what was published after it.
        assert _next(kept, "notification")["title"] == "after"


def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next frame of this type, skipping heartbeats."""
    deadline = time.monotonic() + 10
    while True:
        frame: dict[str, Any] = json.loads(ws.recv(max(0.1, deadline - time.monotonic())))
        if frame["type"] == kind:
            return frame


def test_only_errors_that_say_the_database_is_unreachable_count() -> None:
    assert availability.is_down_error(psycopg.OperationalError("connection refused"))
    assert availability.is_down_error(psycopg.errors.AdminShutdown())
    wrapped = OperationalError("couldn't get a connection")
    wrapped.__cause__ = PoolTimeout()
    assert availability.is_down_error(wrapped)
    assert not availability.is_down_error(psycopg.errors.DeadlockDetected())
    assert not availability.is_down_error(psycopg.errors.QueryCanceled())
