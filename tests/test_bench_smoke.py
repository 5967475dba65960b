"""The benchmark harness itself, at tiny sizes: it starts its servers, runs, and every delivery arrives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import ROOT, database_url

pytestmark = [pytest.mark.server, pytest.mark.django_db(transaction=True)]


def test_bench_runs_every_scenario_and_loses_nothing(tmp_path: Path) -> None:
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url().startswith("postgres") or not redis_url:
        pytest.skip("the bench runs on PostgreSQL and Redis")
    out = tmp_path / "bench.json"
    env = {
        **os.environ,
        "BENCH_DATABASE_URL": database_url(),
        "BENCH_REDIS_URL": redis_url + ("&" if "?" in redis_url else "?") + "socket_timeout=15",
    }
    sizes = ["--users", "20", "--messages", "3", "--rounds", "1", "--idle", "30", "--missed", "30", "--replay-rounds", "1"]
    sizes += ["--workers", "2", "--http-seconds", "0.5", "--http-batch", "10", "--latency-seconds", "1"]
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "--peers",
        "ours,bare",
        "--scenarios",
        "fanout,replay,http",
        *sizes,
        "--no-write",
        "--json",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = orjson.loads(out.read_bytes())["results"]
    fanout = results["fanout"]
    for peer in ("ours", "bare"):
        assert fanout[peer]["ok"], fanout[peer]
        assert [r["deliveries"] for r in fanout[peer]["rounds"]] == [20 * 3]
    assert results["replay"]["ours"]["ok"] and results["replay"]["ours"]["ms"] > 0
    assert "na" in results["replay"]["bare"]
    http = results["http"]["ours"]
    assert http["ok"] and http.get("batch_rate", 0) > 0, http
    assert "this service" in done.stdout  # the table
