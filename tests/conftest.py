"""Shared fixtures: users, tokens, a channel-layer prefix per run, real daphne processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.conf import settings
from django.db import connection, connections

ROOT = Path(__file__).resolve().parent.parent
# How the service is served, here as in scripts/run, the Dockerfile and docker-compose.yml (test_compose checks).
SERVER_MODULE = "notifications.server"
ASGI_APP = "project.asgi:application"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")):
        raise pytest.UsageError("CI runs the suite on PostgreSQL and Redis: set DATABASE_URL and REDIS_URL (scripts/test does).")


@pytest.fixture(scope="session", autouse=True)
def channel_prefix() -> Iterator[str]:
    """Keep this run's channel-layer keys apart from any other run on the same Redis."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    if "CONFIG" in layer and layer["BACKEND"].startswith("channels_redis"):
        layer["CONFIG"]["prefix"] = prefix
    channel_layers.backends.clear()
    yield prefix


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Iterator[None]:
    # Layers hold connections bound to an event loop; each test has its own loop.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def cache_prefix(settings: Any) -> str:
    """Each test counts its rate limits from zero, apart from other tests and runs on the same Redis
    (clearing the cache would flush the whole Redis database, others' keys too). Also given to daphne_factory's servers."""
    prefix = f"c{uuid.uuid4().hex[:8]}"
    settings.CACHES = {name: {**cache, "KEY_PREFIX": prefix} for name, cache in settings.CACHES.items()}
    return prefix


@pytest.fixture
async def close_thread_connections() -> AsyncIterator[None]:
    """For tests that reach the ORM through sync_to_async: its one shared thread keeps a connection,
    which would keep the test database from being dropped. Opt in with usefixtures."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def make_user(django_user_model: Any) -> Any:
    counter = iter(range(1, 10**6))

    def make(username: str | None = None, **extra: Any) -> Any:
        name = username or f"user{next(counter)}-{uuid.uuid4().hex[:6]}"
        return django_user_model.objects.create_user(username=name, password="pw-" + name, **extra)

    return make


@pytest.fixture
def user(make_user: Any) -> Any:
    return make_user("alice")


@pytest.fixture
def fast_passwords(settings: Any) -> None:
    """make_user hashes a password; PBKDF2 would dominate a test module of many users.

    Opt in with `usefixtures`: not autouse, because a daphne process checks passwords
    with the default hashers, so a browser test's login would fail.
    """
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url() -> str:
    """The URL of the database this test session uses (pytest-django's test database)."""
    d = connection.settings_dict
    if d["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{d['NAME']}"
    return f"postgres://{d['USER'] or 'postgres'}@{d['HOST'] or '127.0.0.1'}:{d['PORT'] or 5432}/{d['NAME']}"


class DaphneServer:
    """A real daphne process serving project.asgi on a free loopback port."""

    def __init__(self, prefix: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.prefix = prefix
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "test-artifacts" / f"daphne-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/notifications/"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CHANNEL_PREFIX": self.prefix,
            "CACHE_PREFIX": self.prefix,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "NOTIFY_HEARTBEAT_SECONDS": "2",
            **self.extra_env,
        }
        return env

    def start(self) -> DaphneServer:
        self.log.parent.mkdir(exist_ok=True)
        out = self.log.open("ab")
        cmd = [sys.executable, "-m", SERVER_MODULE, "-b", "127.0.0.1", "-p", str(self.port), ASGI_APP]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=out, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            # An answer, not a connection: with --workers the port listens before a child serves it.
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.settimeout(1.0)
                    sock.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    if sock.recv(16).startswith(b"HTTP/1."):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daphne did not serve on {self.port} within {timeout}s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> DaphneServer:
        """A crash and a restart: kill the process, start a new one on the same port."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def daphne_factory(channel_prefix: str, cache_prefix: str, transactional_db: None) -> Iterator[Any]:
    servers: list[DaphneServer] = []

    def start(**env: str) -> DaphneServer:
        server = DaphneServer(channel_prefix, {"CACHE_PREFIX": cache_prefix, **env}).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def daphne(daphne_factory: Any) -> DaphneServer:
    return daphne_factory()


@pytest.fixture
def token_for() -> Any:
    from notifications import auth

    def issue(user: Any, scopes: tuple[str, ...] = ("publish", "read")) -> str:
        return auth.issue_token(user=user, scopes=scopes).secret

    return issue
