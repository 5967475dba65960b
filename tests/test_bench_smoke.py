"""The benchmark harness itself, at tiny sizes: it starts its servers, runs, and every delivery arrives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from notifications.models import UserStream
from tests.conftest import KILLS_AGAINST_THE_CLOCK, ROOT, database_url

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True), KILLS_AGAINST_THE_CLOCK]


SIZES = ["--users", "20", "--messages", "3", "--rounds", "1", "--idle", "30", "--missed", "30", "--replay-rounds", "1"]
SIZES += ["--workers", "2", "--http-seconds", "0.5", "--http-batch", "10", "--latency-seconds", "1"]
SIZES += ["--idle-latency-users", "10", "--idle-latency-publishes", "5", "--storm-clients", "50", "--storm-missed", "3"]


def run_bench(tmp_path: Path, peers: str, scenarios: str) -> tuple[dict[str, Any], str]:
    """`bench/run` at tiny sizes: its figures and its table."""
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url().startswith("postgres") or not redis_url:
        pytest.skip("the bench runs on PostgreSQL and Redis")
    out = tmp_path / "bench.json"
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": database_url(),
        "BENCH_REDIS_URL": redis_url + ("&" if "?" in redis_url else "?") + "socket_timeout=15",
        # Each daphne still drains with 1012 when stopped (the storm checks it), over 1 s rather than 3.
        "NOTIFY_DRAIN_SECONDS": "1",
    }
    cmd = [sys.executable, "-m", "bench", "--peers", peers, "--scenarios", scenarios, *SIZES, "--no-write", "--json", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return orjson.loads(out.read_bytes())["results"], done.stdout


def test_bench_runs_every_scenario_and_loses_nothing(tmp_path: Path) -> None:
    results, table = run_bench(tmp_path, "ours,ours-uvicorn,bare", "fanout,latency,replay,http,storm")
    fanout = results["fanout"]
    for peer in ("ours", "ours-uvicorn", "bare"):
        assert fanout[peer]["ok"], fanout[peer]
        assert [r["deliveries"] for r in fanout[peer]["rounds"]] == [20 * 3]
        latency = results["latency"][peer]
        assert latency["ok"] and latency["samples"] == 20 * 2, latency
        assert latency["idle_samples"] == 10 * 5 and latency["idle_p50"] > 0, latency  # one publish at a time, each waited for
    for peer in ("ours", "ours-uvicorn"):
        assert results["replay"][peer]["ok"] and results["replay"][peer]["ms"] > 0
        http = results["http"][peer]
        assert http["ok"] and http.get("batch_rate", 0) > 0, http
        # The server restarted under 50 clients, 3 published to each while it was down: every one came back,
        # reconnecting with client.js's backoff, and holds its 3 with consecutive seqs, then `synced`.
        storm = results["storm"][peer]
        assert storm["ok"], storm
        assert storm["published"] == 50 * 3 and storm["back"] == 50, storm
        assert storm["lost"] == storm["not_received"] == storm["gaps"] == storm["wrong_cursor"] == 0, storm
        assert storm["attempts"] >= 50 and 0 < storm["p50_s"] <= storm["all_back_s"] == storm["slowest_s"], storm
        assert sum(storm["closes"].values()) == 50, storm
    assert results["storm"]["ours"]["closes"] == {"1012": 50}  # the drain: notifications/server.py
    for scenario in ("replay", "http", "storm"):
        assert "na" in results[scenario]["bare"]
    assert "this service" in table
    assert "reconnect storm" in table


def test_bench_measures_the_event_stream_beside_the_socket(tmp_path: Path) -> None:
    """ours-stream: the same server, clients reading GET /api/v1/me/stream and POSTing their acks; nothing lost."""
    results, table = run_bench(tmp_path, "ours-stream", "fanout,connections,replay,http,storm")
    fanout = results["fanout"]["ours-stream"]
    assert fanout["ok"] and [r["deliveries"] for r in fanout["rounds"]] == [20 * 3], fanout
    idle = results["connections"]["ours-stream"]
    assert idle["ok"] and idle["connections"] == 30 and idle["rss_after_mb"] > 0, idle  # and one broadcast reached all 30
    assert results["replay"]["ours-stream"]["ok"] and results["replay"]["ours-stream"]["ms"] > 0
    # Only stream clients ran: the fan-out users' delivered cursors moved, so their acks went over POST /api/v1/me/frames.
    fanout_users = [f"bench-{i:05d}" for i in range(20)]
    cursors = UserStream.objects.filter(user__username__in=fanout_users).values_list("delivered_seq", "head_seq")
    assert len(cursors) == 20 and all(0 < delivered == head for delivered, head in cursors), list(cursors)
    for scenario in ("http", "storm"):
        assert "not run" in results[scenario]["ours-stream"]["na"]
    assert "this service (event stream)" in table
