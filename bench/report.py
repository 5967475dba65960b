"""The table, bench/RESULTS.md and bench/results.png, from the runner's figures."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .procs import ROOT, Env
from .scenarios import Sizes

BENCH = ROOT / "bench"
PACKAGES: tuple[str, ...] = (
    "Django",
    "channels",
    "channels-redis",
    "daphne",
    "Twisted",
    "python-socketio",
    "python-engineio",
    "uvicorn",
    "websockets",
)
PACKAGES += ("psycopg", "orjson")
LABELS = {
    "ours": "this service",
    "ours-uvicorn": "this service (uvicorn)",
    "ours-stream": "this service (event stream)",
    "channels": "plain Channels",
    "socketio": "python-socketio",
    "bare": "bare websockets",
    "ours-2": "this service, 2 workers",
    "socketio-2": "python-socketio, 2 workers",
}

# (scenario, key, row label, format, better)
ROWS: list[tuple[str, str, str, str, str]] = [
    ("fanout", "rate", "a. fan-out deliveries/s (median)", "{:,.0f}", "higher"),
    ("fanout", "seconds", "a. fan-out time to last delivery, s", "{:.2f}", "lower"),
    ("latency", "p50", "b. latency p50, ms", "{:.1f}", "lower"),
    ("latency", "p99", "b. latency p99, ms", "{:.1f}", "lower"),
    ("latency", "max", "b. latency max, ms", "{:.1f}", "lower"),
    ("latency", "idle_p50", "b. idle latency p50 (one publish at a time), ms", "{:.1f}", "lower"),
    ("latency", "idle_p99", "b. idle latency p99, ms", "{:.1f}", "lower"),
    ("connections", "connect_rate", "c. connects/s", "{:,.0f}", "higher"),
    ("connections", "rss_per_conn_kb", "c. RSS per idle connection, kB", "{:.1f}", "lower"),
    ("connections", "broadcast_s", "c. one broadcast to all, s", "{:.2f}", "lower"),
    ("replay", "ms", "d. replay of missed, until synced, ms", "{:.1f}", "lower"),
    ("http", "single_rate", "e. HTTP publish, single, notifications/s", "{:,.0f}", "higher"),
    ("http", "batch_rate", "e. HTTP publish, batch, notifications/s", "{:,.0f}", "higher"),
    ("storm", "back", "f. reconnect storm: clients back within the wait", "{:,.0f}", "higher"),
    ("storm", "all_back_s", "f. reconnect storm: all back and synced (slowest client), s", "{:.1f}", "lower"),
    ("storm", "p50_s", "f. reconnect storm: per-client p50, s", "{:.1f}", "lower"),
    ("storm", "p99_s", "f. reconnect storm: per-client p99, s", "{:.1f}", "lower"),
    ("storm", "ready_s", "f. reconnect storm: server spawn to listening, s", "{:.2f}", "lower"),
    ("storm", "attempts", "f. reconnect storm: reconnect attempts", "{:,.0f}", "lower"),
    ("storm", "lost", "f. reconnect storm: lost", "{:,.0f}", "lower"),
    ("storm", "dups", "f. reconnect storm: duplicates", "{:,.0f}", "lower"),
    ("storm", "postgres_cpu_s", "f. reconnect storm: PostgreSQL CPU, s", "{:.1f}", "lower"),
    ("storm", "server_cpu_s", "f. reconnect storm: server CPU, s", "{:.1f}", "lower"),
]


def missing_scenario(name: str) -> Callable[..., Any]:
    async def unavailable(*_: Any) -> dict[str, Any]:
        return {"ok": True, "na": f"scenario {name!r} not available"}

    return unavailable


def cell(result: dict[str, Any] | None, key: str, fmt: str, partial: bool = False) -> str:
    if result is None:
        return "-"
    if not result.get("ok"):
        # A storm that timed out still says how far it got (`partial`); other failures have no figures of their own.
        return f"{fmt.format(result[key])} (FAILED)" if partial and result.get(key) is not None else "FAILED"
    if "na" in result or key not in result:
        return "n/a"
    return fmt.format(result[key])


def brief(scenario: str, result: dict[str, Any]) -> str:
    if not result.get("ok"):
        return f"FAILED: {result.get('reason')} {result.get('errors', '')}"
    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items() if k not in {"rounds", "rounds_ms"}}
    return str(shown)


def table(results: dict[str, dict[str, Any]], peers: list[str]) -> str:
    head = "| | " + " | ".join(LABELS.get(p, p) for p in peers) + " |"
    lines = [head, "|---" * (len(peers) + 1) + "|"]
    for scenario, key, label, fmt, _ in ROWS:
        if scenario not in results:
            continue
        by_peer = results[scenario]
        lines.append(f"| {label} | " + " | ".join(cell(by_peer.get(p), key, fmt, scenario == "storm") for p in peers) + " |")
    return "\n".join(lines)


def _get(results: dict[str, dict[str, Any]], scenario: str, peer: str, key: str) -> float | None:
    r = results.get(scenario, {}).get(peer)
    if not r or not r.get("ok") or key not in r:
        return None
    return float(r[key])


def _failed(results: dict[str, dict[str, Any]], scenario: str, peer: str) -> bool:
    r = results.get(scenario, {}).get(peer)
    return r is not None and not r.get("ok")


def targets(results: dict[str, dict[str, Any]], subject: str = "ours") -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows for `subject` (ours, or ours-uvicorn), from ratios of the same run."""
    rows: list[tuple[str, str, str]] = []

    def ratio(name: str, scenario: str, key: str, other: str, want: float, higher: bool = True, other_key: str = "") -> None:
        if _failed(results, scenario, subject):
            rows.append((name, "FAILED (lost or timed out)", "missed"))
            return
        a, b = _get(results, scenario, subject, key), _get(results, scenario, other, other_key or key)
        if a is None or b is None or b == 0:
            rows.append((name, "not measured", "-"))
            return
        r = a / b
        met = r >= want if higher else r <= want
        rows.append((name, f"{r:.2f}x", "met" if met else f"missed ({r / want:.0%} of target)" if higher else "missed"))

    def bound(name: str, scenario: str, key: str, limit: float, higher: bool, fmt: str) -> None:
        value = _get(results, scenario, subject, key)
        if _failed(results, scenario, subject):
            rows.append((name, "FAILED (lost or timed out)", "missed"))
        else:
            rows.append((name, _shown(value, fmt), _verdict(value, limit, higher)))

    ratio("fan-out deliveries/s >= 1.5x python-socketio, nothing lost", "fanout", "rate", "socketio", 1.5)
    ratio("latency p99 <= python-socketio's p99", "latency", "p99", "socketio", 1.0, higher=False)
    ratio("latency p50 <= 1.5x python-socketio's p50", "latency", "p50", "socketio", 1.5, higher=False)
    ratio("at idle (one publish at a time), p50 <= 2x bare websockets'", "latency", "idle_p50", "bare", 2.0, higher=False)
    ratio("connects/s >= python-socketio's", "connections", "connect_rate", "socketio", 1.0)
    rows.append(_storm_target(results.get("storm", {}).get(subject)))
    rss = _get(results, "connections", subject, "rss_per_conn_kb")
    held = _get(results, "connections", subject, "connections")
    if _failed(results, "connections", subject):
        rows.append(("RSS per idle connection <= 20 kB, 10,000 held by one process", "FAILED", "missed"))
    else:
        shown = "not measured" if rss is None or held is None else f"{rss:.1f} kB with {held:,.0f} held"
        met = rss is not None and held is not None and rss <= 20 and held >= 10_000
        rows.append(("RSS per idle connection <= 20 kB, 10,000 held by one process", shown, "-" if rss is None else _met(met)))
    bound("batch publish >= 20,000 notifications/s", "http", "batch_rate", 20_000, True, "{:,.0f}/s")
    bound("replay of 1,000 missed <= 50 ms", "replay", "ms", 50, False, "{:.1f} ms")
    return rows


def _storm_target(r: dict[str, Any] | None) -> tuple[str, str, str]:
    name = "reconnect storm: all back <= 30 s, nothing lost (slowest client)"
    if r is None or "na" in r:
        return (name, "not measured", "-")
    if not r.get("ok"):
        return (name, f"FAILED: {r.get('reason', '')}", "missed")
    measured = f"{r['clients']:,} clients all back in {r['all_back_s']:.1f} s (p50 {r['p50_s']:.1f} s, p99 {r['p99_s']:.1f} s)"
    measured += f", {r['lost']} lost, {r['dups']} dups"
    if r["clients"] < 10_000:
        return (name, measured, "- (the target is for 10,000)")
    return (name, measured, _met(r["all_back_s"] <= 30 and r["lost"] == 0))


def _met(met: bool) -> str:
    return "met" if met else "missed"


def _shown(value: float | None, fmt: str) -> str:
    return "not measured" if value is None else fmt.format(value)


def _verdict(value: float | None, bound: float, higher: bool) -> str:
    if value is None:
        return "-"
    return _met(value >= bound if higher else value <= bound)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "-"


def machine(env: Env, args: argparse.Namespace, sizes: Sizes, started: float, load_before: tuple[float, float, float]) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "-")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    db = env.database_url.rsplit("/", 1)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "duration_s": round(time.time() - started),
        "command": "bench/run " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "commit": _cmd(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "dirty": bool(_cmd(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {p: _version(p) for p in PACKAGES},
        "postgres": _cmd(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db[-1], "-tAc", "SHOW server_version"]),
        "redis": _cmd(["redis-server", "--version"]),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "shared": args.shared,
        "sizes": asdict(sizes),
    }  # fmt: skip


def write_results(meta: dict[str, Any], results: dict[str, dict[str, Any]], peers: list[str], tbl: str) -> None:
    s = meta["sizes"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `bench/run` (see bench/README.md and docs/benchmarks.md for what each scenario does).",
        "",
        f"- date: {meta['date']}, took {meta['duration_s']} s; commit {meta['commit']}{' (with local changes)' if meta['dirty'] else ''}",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['cpu']}, {meta['cores']} cores, {meta['memory_gb']} GB, Linux {meta['kernel']}, Python {meta['python']}",
        f"- PostgreSQL {meta['postgres']}; {meta['redis']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        f"- load average before / after: {meta['load_before']} / {meta['load_after']}"
        + (f"; **the machine was shared**: {meta['shared']}" if meta["shared"] else ""),
        f"- sizes: fan-out {s['fanout_users']} sockets x {s['fanout_messages']} notifications, median of {s['rounds']} rounds;"
        f" latency {s['latency_users']} sockets, {s['latency_rate']:g}/s for {s['latency_seconds']:g} s (one run, all samples);"
        f" {s['idle_connections']:,} idle connections (one run);"
        f" latency at idle: {s['idle_latency_users']} sockets, {s['idle_latency_publishes']} publishes one at a time;"
        f" replay of {s['replay_missed']} missed, median of {s['replay_rounds']} rounds;"
        f" reconnect storm of {s['storm_clients']:,} clients, {s['storm_missed']} missed each;"
        f" {s['workers']} load-generator processes",
        "- this service is published to through `services.publish_to_topic` in a separate Python process (Django set up with the same"
        " DATABASE_URL/REDIS_URL/CHANNEL_PREFIX as its daphne): stored in PostgreSQL, then one group_send per 500 recipients."
        " Its clients authenticate with `Authorization: Bearer` and ack like notifications/static/notifications/client.js:"
        " cumulative `ack {seq}` 1 s after the first unacked notification, or at once at 100 unacked."
        + (
            " The event-stream column is the same daphne and publisher; its clients read `GET /api/v1/me/stream?batch=1`"
            " (Server-Sent Events, aiohttp) and POST the same acks to `/api/v1/me/frames`."
            if "ours-stream" in peers
            else ""
        ),
        "",
        "## Figures",
        "",
        tbl,
        "",
        "n/a: the peer stores nothing (no replay, no HTTP publish into a database), or the scenario is not run for it"
        " (the event stream: HTTP publish and the storm; see the details). FAILED: a delivery was lost or a wait timed out.",
        "",
        "## Targets (ratios from this run)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | {m} | {v} |" for t, m, v in targets(results)]
    if "ours-uvicorn" in peers:
        lines += ["", "The same targets for this service under uvicorn (daphne stays the default server):", ""]
        lines += ["| target | measured | verdict |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {v} |" for t, m, v in targets(results, "ours-uvicorn")]
    lines += ["", "## Rounds and details", ""]
    for scenario, by_peer in results.items():
        for peer in peers:
            r = by_peer.get(peer)
            if r is not None:
                lines.append(f"- {scenario} / {LABELS.get(peer, peer)}: {brief(scenario, r)}")
    lines.append("")
    (BENCH / "RESULTS.md").write_text("\n".join(lines))


def plot(results: dict[str, dict[str, Any]], peers: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("fanout", "rate", "a. fan-out deliveries/s", "higher is better"),
        ("latency", "p99", "b. latency p99 (ms)", "lower is better"),
        ("connections", "rss_per_conn_kb", "c. RSS per idle connection (kB)", "lower is better"),
        ("connections", "connect_rate", "c. connects/s", "higher is better"),
        ("storm", "all_back_s", "f. reconnect storm, all back (s)", "lower is better"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    colors = {
        "ours": "#2b6cb0",
        "ours-uvicorn": "#63b3ed",
        "ours-stream": "#805ad5",
        "channels": "#718096",
        "socketio": "#dd6b20",
        "bare": "#38a169",
        "ours-2": "#1a365d",
        "socketio-2": "#9c4221",
    }
    for ax, (scenario, key, title, note) in zip(axes, panels, strict=True):
        names, values = [], []
        for p in peers:
            v = _get(results, scenario, p, key)
            if v is not None:
                names.append(LABELS.get(p, p).replace(" ", "\n", 1))
                values.append(v)
        ax.bar(names, values, color=[colors.get(p, "#999") for p in peers if _get(results, scenario, p, key) is not None])
        ax.set_title(f"{title}\n({note})", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.0f}" if v >= 100 else f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(BENCH / "results.png", dpi=110)
    plt.close(fig)
