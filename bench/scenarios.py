"""The scenarios, each run against one peer: start what it needs, measure, check every delivery, stop.

A scenario returns a dict of figures (medians over rounds where it has rounds,
the rounds themselves under "rounds") and `ok`: False when any delivery was
lost, a socket failed to connect, or a wait timed out. A lost message fails the
run; it never makes it faster.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .procs import REPLY_TIMEOUT, Env, Peer, Profiler, Server, Workers, cpu_seconds, pids_named, publisher, rss_kb


@dataclass(frozen=True)
class Sizes:
    fanout_users: int = 1000
    fanout_messages: int = 50
    latency_users: int = 1000
    latency_rate: float = 2.0
    latency_seconds: float = 30.0
    idle_connections: int = 10_000
    replay_missed: int = 1000
    rounds: int = 3
    replay_rounds: int = 5
    workers: int = 4
    connect_concurrency: int = 8  # handshakes in flight per load-generator process
    http_seconds: float = 5.0
    http_batch: int = 500
    idle_latency_users: int = 100  # latency's idle phase: this many sockets...
    idle_latency_publishes: int = 20  # ...get this many publishes, one at a time...
    idle_latency_gap: float = 0.2  # ...at least this many seconds apart
    storm_clients: int = 10_000
    storm_missed: int = 10  # published to each storm client's user while the server is down
    storm_wait: float = 120.0  # the bound on the wait for every client to be back
    profile: str = ""  # a folder: py-spy records the server and the publisher of every run into it


@dataclass
class Data:
    """What setup_data issued: tokens for bench users, in user order."""

    tokens: list[str]
    user_ids: list[int]
    replay_user: int
    replay_token: str
    fanout_topic: str
    all_topic: str
    idle_topic: str  # the first idle_latency_users users


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


async def connect(
    workers: Workers, server: Server, peer: Peer, data: Data, count: int, concurrency: int = 16, first: int = 0, retry: bool = False
) -> dict[str, Any]:
    """Connect `count` sockets (ours: the users from index `first` on); with `retry`, each reconnects as client.js does."""
    n = len(workers.procs)
    if peer.client == "ours":
        per: list[dict[str, Any]] = [{"tokens": chunk} for chunk in split(data.tokens[first : first + count], n)]
    else:
        per = [{"count": len(chunk)} for chunk in split(list(range(count)), n)]
    # Bounded, and not by the usual 300 s: 10,000 handshakes at this service's ~100-160/s take a minute or two.
    reply_s = max(REPLY_TIMEOUT, count / 10)
    replies = await workers.all(
        reply_s=reply_s, cmd="connect", url=server.client_url, kind=peer.client, concurrency=concurrency, retry=retry, per_worker=per
    )
    connected = sum(r["connected"] for r in replies)
    t0, t1 = min(r["t0"] for r in replies), max(r["t1"] for r in replies)
    errors = [e for r in replies for e in r["errors"]]
    seconds = max(t1 - t0, 1e-9)
    return {"connected": connected, "failed": count - connected, "seconds": seconds, "rate": connected / seconds, "errors": errors[:3]}


async def expect(workers: Workers, n: int, wait: float) -> dict[str, Any]:
    replies = await workers.all(reply_s=wait + 30, cmd="expect", n=n, wait=wait)
    return {
        "complete": all(r["complete"] for r in replies),
        "missing": sum(r["missing"] for r in replies),
        "delivered": sum(r["delivered"] for r in replies),
        "dups": sum(r["dups"] for r in replies),
        "frames": sum(r.get("frames", 0) for r in replies),
        "last": max(r["last"] for r in replies),
        "latencies": [x for r in replies for x in r["latencies"]],
        "errors": [e for r in replies for e in r["errors"]][:3],
    }


class Run:
    """One peer's servers, publisher and load generator, stopped on exit whatever happens."""

    def __init__(self, peer: Peer, env: Env, sizes: Sizes, topic: str = "") -> None:
        # A channel-layer prefix per run: an earlier run's killed server leaves its channel in the
        # group (channels-redis keeps members for a day), and every later push would be copied into it.
        env = replace(env, prefix=f"{env.prefix}{uuid.uuid4().hex[:4]}")
        self.peer, self.env, self.sizes, self.topic = peer, env, sizes, topic
        self.server = Server(peer, env)
        self.workers = Workers(sizes.workers)
        self.pub: Any = None
        self.next_n = 1
        self.profilers: list[Profiler] = []

    async def __aenter__(self) -> Run:
        try:
            await self.server.start()
            await self.workers.start()
            self.pub = await publisher(self.peer.client, self.env, self.server, self.topic)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def profile(self, scenario: str) -> None:
        """With --profile, sample the server and the publisher from here on (the measured part)."""
        if self.sizes.profile and not self.profilers:
            folder = Path(self.sizes.profile)
            name = f"{scenario}-{self.peer.name}"
            self.profilers = [
                await Profiler(self.server.pid, folder / f"{name}-server.txt").start(),
                await Profiler(self.pub.proc.pid, folder / f"{name}-publisher.txt").start(),
            ]

    async def __aexit__(self, *exc: object) -> None:
        for profiler in self.profilers:
            await profiler.stop()
        if self.pub is not None:
            await self.pub.stop()
        await self.workers.stop()
        await self.server.stop()

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part of the run (PostgreSQL and Redis: every process, shared ones too)."""
        return {
            "server": sum(cpu_seconds(pid) for pid in self.server.pids),
            "publisher": cpu_seconds(self.pub.proc.pid) if self.pub and self.pub.proc else 0.0,
            "loadgen": sum(cpu_seconds(p.proc.pid) for p in self.workers.procs if p.proc),
            "postgres": sum(cpu_seconds(pid, children=True) for pid in pids_named("postgres")),
            "redis": sum(cpu_seconds(pid, children=True) for pid in pids_named("redis-server")),
        }

    async def burst(self, count: int, wait: float) -> dict[str, Any]:
        """Publish `count` back to back and wait until every socket has them all."""
        await self.workers.all(cmd="mark")
        sent = await self.pub.ask(cmd="burst", first=self.next_n, count=count)
        self.next_n += count
        got = await expect(self.workers, count, wait)
        got["t0"], got["t1"] = sent["t0"], sent["t1"]
        return got


def _failed(reason: str, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "reason": reason, **extra}


async def _connect_and_warm(run: Run, peer: Peer, data: Data, users: int) -> dict[str, Any] | None:
    """Connect `users` sockets and check one delivery reaches them all; a failure result, or None."""
    conn = await connect(run.workers, run.server, peer, data, users)
    if conn["failed"]:
        return _failed("connect", **conn)
    warm = await run.burst(1, 30)
    if not warm["complete"]:
        return _failed("warm-up delivery lost", missing=warm["missing"], errors=warm["errors"])
    return None


async def fanout(peer: Peer, env: Env, sizes: Sizes, data: Data) -> dict[str, Any]:
    """a. 1,000 sockets on one topic, 50 notifications as fast as the publisher can."""
    users, count = sizes.fanout_users, sizes.fanout_messages
    async with Run(peer, env, sizes, data.fanout_topic) as run:
        if failure := await _connect_and_warm(run, peer, data, users):
            return failure
        await run.profile("fanout")
        rounds: list[dict[str, Any]] = []
        for _ in range(sizes.rounds):
            cpu_before = run.cpu()
            got = await run.burst(count, 120)
            cpu = {k: round(v - cpu_before[k], 2) for k, v in run.cpu().items()}
            if not got["complete"]:
                return _failed(f"{got['missing']} deliveries lost", rounds=rounds, errors=got["errors"])
            elapsed = got["last"] - got["t0"]
            publish_s = got["t1"] - got["t0"]
            rounds.append(
                {
                    "deliveries": users * count,
                    "seconds": elapsed,
                    "rate": users * count / elapsed,
                    "publish_s": publish_s,
                    "dups": got["dups"],
                    "per_frame": round(got["delivered"] / max(1, got["frames"]), 2),
                    "cpu_s": cpu,
                }
            )
            await asyncio.sleep(0.5)  # let acks land before the next round
    return {
        "ok": True,
        "rate": statistics.median(r["rate"] for r in rounds),
        "seconds": statistics.median(r["seconds"] for r in rounds),
        "publish_s": statistics.median(r["publish_s"] for r in rounds),
        "per_frame": statistics.median(r["per_frame"] for r in rounds),
        "cpu_s": rounds[len(rounds) // 2]["cpu_s"],
        "rounds": rounds,
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def _idle_latency(run: Run, sizes: Sizes) -> dict[str, Any]:
    """One publish at a time to the sockets connected now, each waited for before the next."""
    await run.workers.all(cmd="mark", latency=True)
    got: dict[str, Any] = {"latencies": []}
    for i in range(sizes.idle_latency_publishes):
        started = time.monotonic()
        await run.pub.ask(cmd="burst", first=run.next_n, count=1)
        run.next_n += 1
        got = await expect(run.workers, i + 1, 30)
        if not got["complete"]:
            return _failed(f"idle phase: {got['missing']} deliveries lost", errors=got["errors"])
        await asyncio.sleep(max(0.0, started + sizes.idle_latency_gap - time.monotonic()))
    lat = got["latencies"]
    return {"idle_samples": len(lat), "idle_p50": percentile(lat, 50), "idle_p99": percentile(lat, 99), "idle_max": max(lat)}


async def latency(peer: Peer, env: Env, sizes: Sizes, data: Data) -> dict[str, Any]:
    """b. At idle, 100 sockets and 20 publishes one at a time; then 1,000 sockets, 2 publishes a second for 30 s; publish to receipt."""
    users = sizes.latency_users
    idle_users = min(sizes.idle_latency_users, users)
    count = int(sizes.latency_rate * sizes.latency_seconds)
    # The idle phase first, with only its sockets connected (the other peers' publishes reach every
    # socket); ours publishes to a topic of exactly those users, so it stores no rows for anyone else.
    async with Run(peer, env, sizes, data.idle_topic) as run:
        if failure := await _connect_and_warm(run, peer, data, idle_users):
            return failure
        await run.profile("latency")
        idle = await _idle_latency(run, sizes)
        if not idle.get("idle_samples"):
            return idle
        if users > idle_users:
            conn = await connect(run.workers, run.server, peer, data, users - idle_users, first=idle_users)
            if conn["failed"]:
                return _failed("connect", **conn)
        if peer.client == "ours":
            await run.pub.ask(cmd="topic", topic=data.fanout_topic)  # its first users are the idle phase's
        warm = await run.burst(1, 30)
        if not warm["complete"]:
            return _failed("warm-up delivery lost", missing=warm["missing"], errors=warm["errors"])
        await run.workers.all(cmd="mark", latency=True)
        pace = {"rate": sizes.latency_rate, "seconds": sizes.latency_seconds}
        sent = await run.pub.ask(reply_s=sizes.latency_seconds + 60, cmd="paced", first=run.next_n, **pace)
        got = await expect(run.workers, count, 60)
        if not got["complete"]:
            return _failed(f"{got['missing']} deliveries lost", errors=got["errors"])
        lat = got["latencies"]
    return {
        "ok": True,
        "samples": len(lat),
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "max": max(lat),
        "publish_call_max_ms": sent["call_ms_max"],
        **idle,
    }


async def connections(peer: Peer, env: Env, sizes: Sizes, data: Data) -> dict[str, Any]:
    """c. 10,000 idle (authenticated, for ours) sockets on one process; RSS per socket; one broadcast to all."""
    n = sizes.idle_connections
    async with Run(peer, env, sizes, data.all_topic) as run:
        warm = await connect(run.workers, run.server, peer, data, min(20, n))
        await run.workers.all(cmd="close")
        if warm["failed"]:
            return _failed("warm-up connect", **warm)
        await asyncio.sleep(1.0)
        before = sum(rss_kb(pid) for pid in run.server.pids)
        await run.profile("connections")
        conn = await connect(run.workers, run.server, peer, data, n, concurrency=sizes.connect_concurrency)
        if conn["failed"]:
            return _failed(f"{conn['failed']} of {n} did not connect", errors=conn["errors"])
        await asyncio.sleep(2.0)
        after = sum(rss_kb(pid) for pid in run.server.pids)
        got = await run.burst(1, 120)
        if not got["complete"]:
            return _failed(f"broadcast: {got['missing']} of {n} lost", errors=got["errors"])
    return {
        "ok": True,
        "connections": n,
        "connect_rate": conn["rate"],
        "connect_s": conn["seconds"],
        "rss_before_mb": before / 1024,
        "rss_after_mb": after / 1024,
        "rss_per_conn_kb": (after - before) / n,
        "broadcast_s": got["last"] - got["t0"],
    }


async def replay(peer: Peer, env: Env, sizes: Sizes, data: Data) -> dict[str, Any]:
    """d. A client that missed 1,000 notifications reconnects with ?since=; time to all of them and `synced`."""
    if not peer.stores:
        return {"ok": True, "na": "nothing stored: a missed message is gone"}
    async with Run(peer, env, sizes) as run:
        await run.profile("replay")
        rounds = []
        for _ in range(sizes.replay_rounds + 1):  # the first is a warm-up
            missed = await run.pub.ask(cmd="missed", user=data.replay_user, n=sizes.replay_missed)
            await asyncio.sleep(0.2)
            args = {"url": run.server.client_url, "token": data.replay_token, "since": missed["since"], "n": sizes.replay_missed}
            got = await run.workers.procs[0].ask(cmd="replay", **args)
            if not got["complete"]:
                return _failed(f"replay incomplete: {got['received']} of {sizes.replay_missed}", errors=got["errors"])
            rounds.append(got["seconds"] * 1000)
    return {"ok": True, "ms": statistics.median(rounds[1:]), "rounds_ms": rounds[1:], "warmup_ms": rounds[0]}


async def http(peer: Peer, env: Env, sizes: Sizes, data: Data) -> dict[str, Any]:
    """e. POST /api/v1/notifications (one notification to one user a request) and /batch (http_batch of them), into PostgreSQL."""
    if not peer.stores:
        return {"ok": True, "na": "no HTTP publish: nothing stored"}
    if peer.stream:
        return {"ok": True, "na": "not run: the same server and HTTP API as ours; only its clients differ"}
    users = data.user_ids[: max(sizes.fanout_users, sizes.http_batch)]
    singles = [{"users": [u], "title": f"http {i}", "body": "single"} for i, u in enumerate(users)]
    batches = [
        {"notifications": [{"users": [u], "title": f"batch {b}.{i}", "body": "batch"} for i, u in enumerate(users[: sizes.http_batch])]}
        for b in range(4)
    ]
    async with Run(peer, env, sizes) as run:
        url = run.server.http_url
        probe = await run.workers.procs[0].ask(
            cmd="http",
            url=url + "/api/v1/notifications",
            token=data.tokens[0],
            bodies=singles[:1],
            expected=[1],
            seconds=0.01,
            concurrency=1,
        )
        if probe["requests"] != 1 or probe["errors"]:
            return {"ok": True, "na": f"no publish API here: {probe['errors_seen'][:1]}"}
        await run.profile("http")
        out: dict[str, Any] = {"ok": True}
        for name, path, bodies, each in (
            ("single", "/api/v1/notifications", singles, 1),
            ("batch", "/api/v1/notifications/batch", batches, sizes.http_batch),
        ):
            split_bodies = split(bodies, len(run.workers.procs))
            per = [{"bodies": b, "expected": [each] * len(b)} for b in split_bodies]
            replies = await run.workers.all(
                reply_s=sizes.http_seconds + 120, cmd="http", url=url + path, token=data.tokens[0], seconds=sizes.http_seconds,
                concurrency=4 if name == "single" else 1, per_worker=per,
            )  # fmt: skip
            errors = sum(r["errors"] for r in replies)
            if errors:
                return _failed(f"{name}: {errors} requests failed", errors=[e for r in replies for e in r["errors_seen"]][:3])
            seconds = max(r["t1"] for r in replies) - min(r["t0"] for r in replies)
            stored = sum(r["stored"] for r in replies)
            out[f"{name}_rate"] = stored / seconds
            out[f"{name}_requests"] = sum(r["requests"] for r in replies)
            out[f"{name}_p50_ms"] = statistics.median(r["p50_ms"] for r in replies)
    return out


async def storm(peer: Peer, env: Env, sizes: Sizes, data: Data) -> dict[str, Any]:
    """f. Reconnect storm: 10,000 clients, the server restarted as a deploy does, 10 notifications to each user while it is down.

    Timed from the new process's spawn until every client has reconnected (with client.js's
    backoff and ?since=), received its missed ones (consecutive seqs) and `synced`.
    """
    if not peer.stores:
        return {"ok": True, "na": "nothing stored: what is published while the server is down is gone"}
    if peer.stream:
        return {"ok": True, "na": "not run: the storm's clients reconnect sockets as client.js does"}
    n, missed = sizes.storm_clients, sizes.storm_missed
    async with Run(peer, env, sizes) as run:
        conn = await connect(run.workers, run.server, peer, data, n, concurrency=sizes.connect_concurrency, retry=True)
        if conn["failed"]:
            return _failed(f"{conn['failed']} of {n} did not connect", errors=conn["errors"])
        _say(f"storm: {n} connected in {conn['seconds']:.1f} s; stopping the server")
        await run.workers.all(cmd="mark", storm=missed)
        # A deploy: SIGTERM, then wait for the exit (ours drains with 1012 over NOTIFY_DRAIN_SECONDS).
        stopping = time.monotonic()
        await run.server.stop()
        stop_s = time.monotonic() - stopping
        exit_code = run.server.proc.returncode if run.server.proc else None
        _say(f"storm: stopped in {stop_s:.1f} s (exit {exit_code}); publishing {missed} to each of {n} users")
        published = await run.pub.ask(reply_s=900, cmd="storm", users=data.user_ids[:n], n=missed)  # not timed
        cpu_before = run.cpu()
        await run.server.start(poll_s=0.01)
        spawned = run.server.spawned_at
        _say(f"storm: published in {published['seconds']:.1f} s; new server listening {run.server.ready_at - spawned:.2f} s after spawn")
        await run.profile("storm")
        replies = await run.workers.all(reply_s=sizes.storm_wait + 60, cmd="storm_wait", t0=spawned, wait=sizes.storm_wait)
        cpu = {k: round(v - cpu_before[k], 2) for k, v in run.cpu().items() if k in {"postgres", "loadgen", "redis"}}
        cpu["server"] = round(run.cpu()["server"], 2)  # a new process: all of its CPU is the storm's
    seconds = sorted(x for r in replies for x in r["seconds"])
    figures: dict[str, Any] = {
        "clients": n,
        "missed_each": missed,
        "connect_rate": conn["rate"],
        "stop_s": stop_s,
        "exit_code": exit_code,
        "publish_s": published["seconds"],
        "published": published["rows"],
        "ready_s": run.server.ready_at - spawned,
        "back": len(seconds),
        "slowest_s": seconds[-1] if seconds else None,
        "p50_s": percentile(seconds, 50) if seconds else None,
        "p99_s": percentile(seconds, 99) if seconds else None,
        "attempts": sum(r["attempts"] for r in replies),
        "attempts_after_spawn": sum(r["attempts_after"] for r in replies),
        "failed_attempts": sum(r["failed"] for r in replies),
        "max_attempts": max(r["max_attempts"] for r in replies),
        "lost": sum(r["lost"] for r in replies),
        "not_received": sum(r["not_received"] for r in replies),
        "gaps": sum(r["gaps"] for r in replies),
        "wrong_cursor": sum(r["wrong_cursor"] for r in replies),
        "dups": sum(r["dups"] for r in replies),
        "closes": _merged(r["closes"] for r in replies),
        "failures": _merged(r["failures"] for r in replies),
        "postgres_cpu_s": cpu["postgres"],
        "server_cpu_s": cpu["server"],
        "cpu_s": cpu,
    }
    if len(seconds) < n or figures["lost"] or figures["gaps"] or figures["wrong_cursor"]:
        reason = (
            f"{len(seconds)} of {n} back within {sizes.storm_wait:g} s ({figures['not_received']} notifications not received yet);"
            f" {figures['lost']} lost, {figures['gaps']} gaps"
        )
        return _failed(reason, **figures, errors=[e for r in replies for e in r["errors"]][:3])
    return {"ok": True, "all_back_s": seconds[-1], **figures}


def _say(text: str) -> None:
    print(f"    {text}", file=sys.stderr, flush=True)


def _merged(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return dict(sorted(total.items()))


async def timed(fn: Any, *args: Any) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        result: dict[str, Any] = await fn(*args)
    except Exception as e:
        result = _failed(f"{type(e).__name__}: {e}"[:300])
    result["wall_s"] = time.monotonic() - t0
    return result


SCENARIOS = {"fanout": fanout, "latency": latency, "connections": connections, "replay": replay, "http": http, "storm": storm}
