"""`bench/run`: every scenario against every peer in one invocation; a table, RESULTS.md and results.png.

See bench/README.md. The shell wrapper checks PostgreSQL and Redis, creates and
migrates the bench database and raises `ulimit -n`; this module does the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from . import report
from .procs import OUT, PEERS, PY, ROOT, Env
from .scenarios import SCENARIOS, Data, Sizes, timed

# ours-uvicorn, an extra column, is left out of the default run (it would add ~6 minutes): `--peers all`.
DEFAULT_PEERS = "ours,ours-stream,channels,socketio,bare"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    d = Sizes()
    p.add_argument(
        "--peers",
        default=DEFAULT_PEERS,
        help=f"comma-separated, from: {', '.join(PEERS)}; or `all` (default: {DEFAULT_PEERS}; ours-uvicorn adds ~6 minutes)",
    )
    p.add_argument("--scenarios", default="fanout,latency,connections,replay,http,storm", help="comma-separated")
    p.add_argument("--rounds", type=int, default=d.rounds, help="fan-out rounds per peer (median reported)")
    p.add_argument("--replay-rounds", type=int, default=d.replay_rounds)
    p.add_argument("--users", type=int, default=d.fanout_users, help="sockets for fan-out and latency")
    p.add_argument("--messages", type=int, default=d.fanout_messages, help="notifications per fan-out round")
    p.add_argument("--latency-seconds", type=float, default=d.latency_seconds)
    p.add_argument("--latency-rate", type=float, default=d.latency_rate)
    p.add_argument("--idle-latency-users", type=int, default=d.idle_latency_users, help="sockets in latency's idle phase")
    p.add_argument("--idle-latency-publishes", type=int, default=d.idle_latency_publishes, help="publishes, one at a time, in it")
    p.add_argument("--idle", type=int, default=d.idle_connections, help="idle connections on one server process")
    p.add_argument("--missed", type=int, default=d.replay_missed, help="notifications a replaying client missed")
    p.add_argument("--storm-clients", type=int, default=d.storm_clients, help="clients reconnecting after the server restarts")
    p.add_argument("--storm-missed", type=int, default=d.storm_missed, help="notifications each storm client misses meanwhile")
    p.add_argument("--storm-wait", type=float, default=d.storm_wait, help="seconds to wait for every storm client to be back")
    p.add_argument("--workers", type=int, default=d.workers, help="load-generator processes")
    p.add_argument("--connect-concurrency", type=int, default=d.connect_concurrency, help="handshakes in flight per load generator")
    p.add_argument("--http-seconds", type=float, default=d.http_seconds)
    p.add_argument("--http-batch", type=int, default=d.http_batch)
    p.add_argument("--profile", default="", help="a folder: record the server and publisher of every run with py-spy (root)")
    p.add_argument("--shared", default="", help="say in RESULTS.md that the machine was shared, and with what")
    p.add_argument("--no-write", action="store_true", help="print the table only; leave RESULTS.md and results.png alone")
    p.add_argument("--json", default="", help="also write the raw figures to this file")
    return p.parse_args(argv)


def raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need and hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def setup_data(env: Env, users: int, fanout: int, idle: int) -> Data:
    OUT.mkdir(parents=True, exist_ok=True)
    # A file of this run's own (the suite runs two benches at once, on two databases); its secrets go once read.
    path = OUT / f"data-{env.prefix}.json"
    sizes = ["--users", str(users), "--fanout", str(fanout), "--idle", str(idle)]
    subprocess.run([PY, "-m", "bench.setup_data", str(path), *sizes], cwd=ROOT, env=env.django(), check=True)
    raw = orjson.loads(path.read_bytes())
    path.unlink()
    return Data(
        raw["tokens"], raw["user_ids"], raw["replay_user"], raw["replay_token"], raw["fanout_topic"], raw["all_topic"], raw["idle_topic"]
    )


async def run(args: argparse.Namespace) -> int:
    sizes = Sizes(
        fanout_users=args.users, fanout_messages=args.messages, latency_users=args.users, latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds, idle_connections=args.idle, replay_missed=args.missed, rounds=args.rounds,
        replay_rounds=args.replay_rounds, workers=args.workers, http_seconds=args.http_seconds, http_batch=args.http_batch,
        profile=args.profile, connect_concurrency=args.connect_concurrency, idle_latency_users=args.idle_latency_users,
        idle_latency_publishes=args.idle_latency_publishes, storm_clients=args.storm_clients, storm_missed=args.storm_missed,
        storm_wait=args.storm_wait,
    )  # fmt: skip
    scenarios = [s for s in args.scenarios.split(",") if s]
    storm_clients = sizes.storm_clients if "storm" in scenarios else 0  # users and tokens only for a storm that runs
    most = max(sizes.idle_connections, storm_clients)
    nofile = raise_nofile(2 * most + 2000)
    if nofile < most + 1000:
        print(f"ulimit -n is {nofile}: too low for {most} connections", file=sys.stderr)
        return 2
    env = Env(
        database_url=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench"),
        # redis-py's default socket timeout (5 s) equals channels-redis' blocking receive (5 s): a busy
        # event loop then times the read out and the receiver reconnects. Every peer gets the longer one.
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0?socket_timeout=15"),
        prefix=f"bench{uuid.uuid4().hex[:6]}",
    )
    names = list(PEERS) if args.peers == "all" else [p for p in args.peers.split(",") if p]
    unknown = [p for p in names if p not in PEERS]
    if unknown:
        print(f"unknown peer(s): {', '.join(unknown)}; from: {', '.join(PEERS)}", file=sys.stderr)
        return 2
    peers = [PEERS[p] for p in names]
    started = time.time()
    load_before = os.getloadavg()
    users = max(sizes.idle_connections, sizes.fanout_users, storm_clients)
    data = setup_data(env, users, sizes.fanout_users, min(sizes.idle_latency_users, sizes.latency_users))
    results: dict[str, dict[str, Any]] = {}
    for scenario in scenarios:
        fn = SCENARIOS.get(scenario) or report.missing_scenario(scenario)
        results[scenario] = {}
        for peer in peers:
            print(f"--> {scenario} / {peer.name}", file=sys.stderr, flush=True)
            result = await timed(fn, peer, env, sizes, data)
            results[scenario][peer.name] = result
            print(f"    {report.brief(scenario, result)}", file=sys.stderr, flush=True)
    meta = report.machine(env, args, sizes, started, load_before)
    table = report.table(results, [p.name for p in peers])
    print(table)
    if args.json:
        raw = orjson.dumps({"meta": meta, "results": results}, option=orjson.OPT_INDENT_2)
        Path(args.json).write_bytes(raw)  # noqa: ASYNC240 - once, at the end
    if not args.no_write:
        report.write_results(meta, results, [p.name for p in peers], table)
        report.plot(results, [p.name for p in peers])
    failed = [f"{s}/{p}" for s, by_peer in results.items() for p, r in by_peer.items() if not r.get("ok")]
    if failed:
        print("FAILED: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


def main() -> None:
    sys.exit(asyncio.run(run(parse(sys.argv[1:]))))
