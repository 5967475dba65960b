"""Processes the runner starts: servers under test, publishers, load-generator workers.

Every process is started by this module, tracked, and killed by pid on the
way out (also on Ctrl-C or an exception); every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PY = sys.executable
REPLY_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat.

    With `children`, also that of its children that have exited: PostgreSQL's
    backends come and go, and the postmaster collects their time when they do.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """A process and its children (a server's workers), from /proc/<pid>/task/<pid>/children."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(int(child) for child in children)]


def pids_named(name: str) -> list[int]:
    """Pids whose command is `name` (postgres, redis-server): their CPU is part of a run's cost."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclass
class Env:
    database_url: str
    redis_url: str
    prefix: str
    secret_key: str = "bench-only-secret-key"

    def django(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CHANNEL_PREFIX": self.prefix,
            "CACHE_PREFIX": self.prefix,
            # One token publishes as fast as it can, from one address: the benchmark measures the service, not its limits.
            "NOTIFY_RATE_PUBLISH": "off",
            "NOTIFY_RATE_API_ADDRESS": "off",
            "DJANGO_SECRET_KEY": self.secret_key,
            "DJANGO_DEBUG": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }

    def peer(self) -> dict[str, str]:
        return {**os.environ, "BENCH_REDIS_URL": self.redis_url, "BENCH_CHANNEL_PREFIX": self.prefix + "p", "PYTHONPATH": str(ROOT)}


@dataclass
class Peer:
    name: str  # ours | ours-uvicorn | ours-stream | ours-2 | channels | socketio | socketio-2 | bare
    label: str
    stores: bool  # persistence: only this service can replay or publish over HTTP
    client: str = ""  # the framing its clients speak and how it is published to; the name if empty
    stream: bool = False  # its clients read the event stream (SSE, frames POSTed) instead of a socket
    workers: int = 1  # server processes sharing the port

    def __post_init__(self) -> None:
        self.client = self.client or self.name

    @property
    def server(self) -> str:
        """Which server it runs: the name without the worker count."""
        return self.name.removesuffix(f"-{self.workers}") if self.workers > 1 else self.name


PEERS = {
    "ours": Peer("ours", "this service (daphne + PostgreSQL + Redis, acks on)", True),
    # The same app, settings, clients and publisher as `ours`; only the server differs. uvicorn has
    # no SIGTERM drain (notifications/server.py is daphne's), so its clients see uvicorn's own shutdown.
    "ours-uvicorn": Peer("ours-uvicorn", "this service under uvicorn (PostgreSQL + Redis, acks on)", True, client="ours"),
    # The same daphne, settings and publisher as `ours`; its clients use the event stream instead of the socket.
    "ours-stream": Peer("ours-stream", "this service over the event stream (SSE + POSTed acks)", True, client="ours", stream=True),
    "channels": Peer("channels", "plain Channels (daphne + channels-redis group_send)", False),
    "socketio": Peer("socketio", "python-socketio + AsyncRedisManager (uvicorn)", False),
    "bare": Peer("bare", "bare websockets, in-process broadcast", False),
    # Per core, side by side: two processes sharing one port each (ours: --workers, which binds it
    # in the parent; uvicorn: --workers, the same), python-socketio over its websocket transport.
    "ours-2": Peer("ours-2", "this service, --workers 2 (daphne + PostgreSQL + Redis, acks on)", True, client="ours", workers=2),
    "socketio-2": Peer("socketio-2", "python-socketio + AsyncRedisManager (uvicorn --workers 2)", False, client="socketio", workers=2),
}

# uvicorn's WebSocket implementation for ours-uvicorn (BENCH_UVICORN_WS: websockets, websockets-sansio, wsproto).
UVICORN_WS = os.environ.get("BENCH_UVICORN_WS", "websockets")


@dataclass
class Server:
    peer: Peer
    env: Env
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    spawned_at: float = 0.0  # time.monotonic() when the last start() spawned the process...
    ready_at: float = 0.0  # ...and when its port first accepted a connection

    @property
    def ws_url(self) -> str:
        path = {"ours": "/ws/notifications/", "socketio": "/socket.io/"}.get(self.peer.client, "/ws/")
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client_url(self) -> str:
        """Where its clients connect: the socket, or the event stream (an http:// URL tells the load generator)."""
        return f"{self.http_url}/api/v1/me/stream" if self.peer.stream else self.ws_url

    def command(self) -> tuple[list[str], dict[str, str]]:
        endpoint = f"tcp:port={self.port}:interface=127.0.0.1"
        if self.peer.server in {"ours", "ours-stream"}:
            # Its own listen backlog, as scripts/run and docker compose start it (server.LISTEN_BACKLOG);
            # with workers the parent binds the port, so a host and a port rather than an endpoint.
            where = (
                ["-e", endpoint]
                if self.peer.workers == 1
                else ["-b", "127.0.0.1", "-p", str(self.port), "--workers", str(self.peer.workers)]
            )
            return [PY, "-m", "notifications.server", "-v", "0", *where, "project.asgi:application"], self.env.django()
        endpoint += ":backlog=2048"
        if self.peer.name == "channels":
            return [PY, "-m", "daphne", "-v", "0", "-e", endpoint, "bench.peers.channels_app:application"], self.env.peer()
        if self.peer.name == "ours-uvicorn":
            # The app has no lifespan handler (Channels' router refuses the scope): off, not probed.
            args = [*self._uvicorn_args(UVICORN_WS), "--lifespan", "off"]
            return [PY, "-m", "uvicorn", "project.asgi:application", *args], self.env.django()
        if self.peer.server == "socketio":
            return [PY, "-m", "uvicorn", "bench.peers.socketio_app:app", *self._uvicorn_args("websockets")], self.env.peer()
        return [PY, "-m", "bench.peers.bare_ws", str(self.port)], self.env.peer()

    def _uvicorn_args(self, ws: str) -> list[str]:
        args = ["--host", "127.0.0.1", "--port", str(self.port), "--ws", ws, "--loop", "asyncio", "--backlog", "2048"]
        return [*args, "--workers", str(self.peer.workers), "--log-level", "warning", "--no-access-log"]

    async def start(self, extra_env: dict[str, str] | None = None, poll_s: float = 0.1) -> Server:
        cmd, env = self.command()
        OUT.mkdir(parents=True, exist_ok=True)
        # Appended to: a restarted server (the storm) keeps the first one's log.
        log = (OUT / f"server-{self.peer.name}-{self.port}.log").open("ab")
        self.spawned_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, env={**env, **(extra_env or {})}, stdout=log, stderr=log)
        log.close()
        deadline = self.spawned_at + 30
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.peer.name} server exited: see {log.name}")
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                try:
                    # With workers the parent listens before any worker serves: wait for an answer.
                    if self.peer.workers > 1:
                        writer.write(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                        if not (await asyncio.wait_for(reader.read(16), 1.0)).startswith(b"HTTP/1."):
                            raise OSError("no answer yet")
                    self.ready_at = time.monotonic()
                    return self
                finally:
                    writer.close()
            except (OSError, TimeoutError):
                await asyncio.sleep(poll_s)
        raise RuntimeError(f"{self.peer.name} server did not listen within 30 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        """The server's processes: with workers, the parent and each of them."""
        return process_tree(self.pid)

    async def stop(self) -> None:
        workers = self.pids[1:] if self.proc is not None and self.proc.returncode is None else []
        await _stop(self.proc)
        for pid in workers:  # the parent stops its workers; one it could not stop is killed here, by its pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class LineProcess:
    """A child speaking one JSON line per command and one per answer (load generator, publisher)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, cmd: list[str], env: dict[str, str], wait_ready: bool = False) -> LineProcess:
        OUT.mkdir(parents=True, exist_ok=True)
        log = (OUT / f"{self.name}.log").open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log, limit=2**26
        )
        log.close()
        if wait_ready:
            ready = await self._read(60.0)
            if not ready.get("ready"):
                raise RuntimeError(f"{self.name} did not start: {ready}")
        return self

    async def _read(self, wait: float, what: str = "its start") -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), wait)
        except TimeoutError:
            raise TimeoutError(f"{self.name}: no answer to {what} within {wait:g} s") from None
        if not line:
            raise RuntimeError(f"{self.name} exited (see bench/out/{self.name}.log)")
        reply: dict[str, Any] = orjson.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {reply['error']}")
        return reply

    async def ask(self, reply_s: float = REPLY_TIMEOUT, **cmd: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(cmd) + b"\n")
        await self.proc.stdin.drain()
        return await self._read(reply_s, repr(cmd.get("cmd")))

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.ask(reply_s=15, cmd="close")
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.proc.wait(), 5)
        await _stop(self.proc)


class Workers:
    """The load generator: `count` worker processes sharing the sockets."""

    def __init__(self, count: int) -> None:
        self.procs = [LineProcess(f"loadgen-{i}") for i in range(count)]

    async def start(self) -> Workers:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        await asyncio.gather(*(p.start([PY, "-m", "bench.loadgen"], env) for p in self.procs))
        return self

    async def all(self, reply_s: float = REPLY_TIMEOUT, per_worker: list[dict[str, Any]] | None = None, **cmd: Any) -> list[dict[str, Any]]:
        extra = per_worker or [{} for _ in self.procs]
        return list(await asyncio.gather(*(p.ask(reply_s=reply_s, **cmd, **e) for p, e in zip(self.procs, extra, strict=True))))

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.procs), return_exceptions=True)


async def publisher(peer: str, env: Env, server: Server, topic: str = "") -> LineProcess:
    args = {"kind": peer, "redis": env.redis_url, "prefix": env.prefix + "p", "topic": topic}
    if peer == "bare":
        args["url"] = f"ws://127.0.0.1:{server.port}/publish"
    proc_env = env.django() if peer == "ours" else env.peer()
    cmd = [PY, "-m", "bench.publisher", orjson.dumps(args).decode()]
    return await LineProcess(f"publisher-{peer}").start(cmd, proc_env, wait_ready=True)


class Profiler:
    """py-spy sampling one process into collapsed stacks (`--format raw`); stopped with SIGINT so it writes."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Profiler:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        py_spy = str(Path(PY).parent / "py-spy")
        cmd = [py_spy, "record", "--pid", str(self.pid), "--rate", "200", "--format", "raw", "--output", str(self.out)]
        self.proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        return self

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            await _stop(self.proc)
