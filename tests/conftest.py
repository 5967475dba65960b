"""Shared fixtures: users, tokens, a channel-layer prefix per run, real daphne processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from _pytest.nodeid import NodeId
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.conf import settings
from django.db import connection, connections

ROOT = Path(__file__).resolve().parent.parent
# Under pytest-xdist (scripts/test), one worker runs these one after another: they kill and restart processes
# against time limits, and the bench loads the machine with a dozen; two at once, each beside the other's load,
# missed their limits on two cores (docs/decisions/0017).
KILLS_AGAINST_THE_CLOCK = pytest.mark.xdist_group("kills_against_the_clock")
# How the service is served, here as in scripts/run, the Dockerfile and docker-compose.yml (test_compose checks).
SERVER_MODULE = "notifications.server"
ASGI_APP = "project.asgi:application"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not (os.environ.get("DATABASE_URL", "").startswith("postgres") and os.environ.get("REDIS_URL")):
        raise pytest.UsageError("CI runs the suite on PostgreSQL and Redis: set DATABASE_URL and REDIS_URL (scripts/test does).")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and settings.REDIS_URL:
        use_redis_url(worker_redis_url(settings.REDIS_URL, int(worker.removeprefix("gw"))))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Node ids as pytest-xdist's loadgroup (scripts/test) needs them; pytest 9 builds them from `item._id`, which
    neither schemathesis 4.32 nor pytest-xdist 3.8 sets:
    - schemathesis gives each operation's test its function's node id, without `[operation]`, and loadgroup,
      which keys its work by node id, would run one operation of each function and drop the rest silently;
    - xdist would put an `xdist_group` mark's `@name` on the node id, which its scheduler groups by, in `_nodeid`,
      which pytest 9 no longer reads: every group would be spread over the workers.
    A node id that is still not unique stops the run."""
    for item in items:
        label = getattr(item, "operation_label", None)
        if label and item.id.params is None:
            item._id = item.id.with_params(label)
        group = item.get_closest_marker("xdist_group")
        if group and getattr(config.option, "loadgroup", False) and "@" not in item.nodeid.rpartition("]")[2]:
            name = group.args[0] if group.args else group.kwargs.get("name", "default")
            item._id = NodeId.parse(f"{item.nodeid}@{name}")
    repeated = [nodeid for nodeid, count in Counter(item.nodeid for item in items).items() if count > 1]
    if repeated:
        raise pytest.UsageError(f"tests share a node id, and pytest-xdist would run only one of each: {repeated[:5]}")


def worker_redis_url(url: str, worker: int) -> str:
    """REDIS_URL's database number plus the xdist worker's index. Each worker's test database numbers its users
    from 1 and groups are named by user id: the run's prefixes (channel_prefix, cache_prefix) keep the workers'
    keys apart, and a Redis database each keeps apart anything a test or a server keys without them."""
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0) + worker
    if db > 15:  # Redis' default `databases 16`
        raise pytest.UsageError(f"xdist worker gw{worker} would need Redis database {db} from REDIS_URL {url}: pass fewer workers (-n)")
    return urlunsplit(parts._replace(path=f"/{db}"))


def use_redis_url(url: str) -> None:
    """Point this process and the servers it starts (they inherit os.environ) at another Redis database.
    Django read REDIS_URL before any conftest ran, into each setting built from it."""
    os.environ["REDIS_URL"] = settings.REDIS_URL = url
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    for host in layer["CONFIG"]["hosts"]:
        host["address"] = url
    settings.CACHES["default"]["LOCATION"] = url


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
            # Stopped at a test's end, it leaves after 0.5 s rather than 3.5 s (a drain waits its length even
            # with no sockets); the tests of the drain give their own.
            "NOTIFY_DRAIN_SECONDS": "0",
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

    def terminate(self) -> None:
        """SIGTERM: it drains its sockets (NOTIFY_DRAIN_SECONDS, even with none) and exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        self.terminate()
        if self.proc:
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
    for server in servers:  # all drain at once, not one after another
        server.terminate()
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
