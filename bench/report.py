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
LABELS = {"ours": "this service", "channels": "plain Channels", "socketio": "python-socketio", "bare": "bare websockets"}

# (scenario, key, row label, format, better)
ROWS: list[tuple[str, str, str, str, str]] = [
    ("fanout", "rate", "a. fan-out deliveries/s (median)", "{:,.0f}", "higher"),
    ("fanout", "seconds", "a. fan-out time to last delivery, s", "{:.2f}", "lower"),
    ("latency", "p50", "b. latency p50, ms", "{:.1f}", "lower"),
    ("latency", "p99", "b. latency p99, ms", "{:.1f}", "lower"),
    ("latency", "max", "b. latency max, ms", "{:.1f}", "lower"),
    ("connections", "connect_rate", "c. connects/s", "{:,.0f}", "higher"),
    ("connections", "rss_per_conn_kb", "c. RSS per idle connection, kB", "{:.1f}", "lower"),
    ("connections", "broadcast_s", "c. one broadcast to all, s", "{:.2f}", "lower"),
    ("replay", "ms", "d. replay of missed, until synced, ms", "{:.1f}", "lower"),
    ("http", "single_rate", "e. HTTP publish, single, notifications/s", "{:,.0f}", "higher"),
    ("http", "batch_rate", "e. HTTP publish, batch, notifications/s", "{:,.0f}", "higher"),
]


def missing_scenario(name: str) -> Callable[..., Any]:
    async def unavailable(*_: Any) -> dict[str, Any]:
        return {"ok": True, "na": f"scenario {name!r} not available"}

    return unavailable


def cell(result: dict[str, Any] | None, key: str, fmt: str) -> str:
    if result is None:
        return "-"
    if not result.get("ok"):
        return "FAILED"
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
        lines.append(f"| {label} | " + " | ".join(cell(by_peer.get(p), key, fmt) for p in peers) + " |")
    return "\n".join(lines)


def _get(results: dict[str, dict[str, Any]], scenario: str, peer: str, key: str) -> float | None:
    r = results.get(scenario, {}).get(peer)
    if not r or not r.get("ok") or key not in r:
        return None
    return float(r[key])


def targets(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) rows, from ratios of the same run."""
    rows: list[tuple[str, str, str]] = []

    def ratio(name: str, a: float | None, b: float | None, want: float, higher: bool = True) -> None:
        if a is None or b is None or b == 0:
            rows.append((name, "not measured", "-"))
            return
        r = a / b
        met = r >= want if higher else r <= want
        rows.append((name, f"{r:.2f}x", "met" if met else f"missed ({r / want:.0%} of target)" if higher else "missed"))

    fan = {p: _get(results, "fanout", p, "rate") for p in LABELS}
    ratio("fan-out deliveries/s >= 4x plain Channels", fan["ours"], fan["channels"], 4.0)
    ratio("fan-out deliveries/s >= 25% of bare websockets", fan["ours"], fan["bare"], 0.25)
    ratio(
        "latency p99 <= plain Channels",
        _get(results, "latency", "ours", "p99"),
        _get(results, "latency", "channels", "p99"),
        1.0,
        higher=False,
    )
    ratio(
        "RSS per idle connection <= plain Channels",
        _get(results, "connections", "ours", "rss_per_conn_kb"),
        _get(results, "connections", "channels", "rss_per_conn_kb"),
        1.0,
        higher=False,
    )
    held = _get(results, "connections", "ours", "connections")
    rows.append(("10,000 connections held by one process", _shown(held, "{:,.0f}"), _verdict(held, 10_000, True)))
    replay = _get(results, "replay", "ours", "ms")
    rows.append(("replay of 1,000 missed <= 50 ms", _shown(replay, "{:.1f} ms"), _verdict(replay, 50, False)))
    batch = _get(results, "http", "ours", "batch_rate")
    rows.append(("batch publish >= 20,000 notifications/s", _shown(batch, "{:,.0f}/s"), _verdict(batch, 20_000, True)))
    return rows


def _shown(value: float | None, fmt: str) -> str:
    return "not measured" if value is None else fmt.format(value)


def _verdict(value: float | None, bound: float, higher: bool) -> str:
    if value is None:
        return "-"
    return "met" if (value >= bound if higher else value <= bound) else "missed"


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
        f" replay of {s['replay_missed']} missed, median of {s['replay_rounds']} rounds;"
        f" {s['workers']} load-generator processes",
        "- this service is published to through `services.publish_to_topic` in a separate Python process (Django set up with the same"
        " DATABASE_URL/REDIS_URL/CHANNEL_PREFIX as its daphne): stored in PostgreSQL, then one group_send per 500 recipients."
        " Its clients authenticate with `Authorization: Bearer` and ack like static/notifications/client.js:"
        " cumulative `ack {seq}` 1 s after the first unacked notification, or at once at 100 unacked.",
        "",
        "## Figures",
        "",
        tbl,
        "",
        "n/a: the peer stores nothing (no replay, no HTTP publish into a database). FAILED: a delivery was lost or a wait timed out.",
        "",
        "## Targets (ratios from this run)",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| {t} | {m} | {v} |" for t, m, v in targets(results)]
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
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4))
    colors = {"ours": "#2b6cb0", "channels": "#718096", "socketio": "#dd6b20", "bare": "#38a169"}
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
