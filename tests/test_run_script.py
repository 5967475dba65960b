"""`scripts/run` as a new user runs it: the server and the away-channel worker, one Ctrl-C or SIGTERM stops both.

On its own SQLite file (never the work tree's db.sqlite3), on a free port; the wait
for each step is for what the run prints or serves, with a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.server

TIMEOUT = 120


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert proc.poll() is None, f"scripts/run exited with {proc.returncode} before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_run_serves_and_sends_digests_beside_and_stops_both(tmp_path: Path, stop: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        # The embedded default (DEBUG on: the demo users), on a database of this test's own.
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "DJANGO_DEBUG": "1",
        "EMAIL_URL": "",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "NOTIFY_EMAIL_DELAY_SECONDS": "0",
        "NOTIFY_WORKER_POLL_SECONDS": "0.1",  # many idle rounds in a short test
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("NOTIFY_PUBLIC_URL", None)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["scripts/run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: healthy(port), "the server to answer", proc, log)
        loud = "EMAIL_URL is not set: email digests are PRINTED TO THIS LOG"
        wait_for(lambda: loud in log.read_text(), "the worker to start", proc, log)

        # A notification alice has seen on no device: the worker beside the server emails it, to the console.
        notify = [sys.executable, "manage.py", "notify", "alice", "--title", "Deploy finished"]
        subprocess.run(notify, cwd=ROOT, env=env, check=True, timeout=60)
        wait_for(lambda: "Deploy finished" in log.read_text() and "To: alice@example.com" in log.read_text(), "the digest", proc, log)
        assert f"Your inbox: http://127.0.0.1:{port}/inbox/" in log.read_text()

        # Idle rounds went by (each leaves a finished task row), and said nothing.
        def rounds() -> int:
            count = "from django_tasks_db.models import DBTaskResult; print(DBTaskResult.objects.finished().count())"
            shell = [sys.executable, "manage.py", "shell", "-c", count]
            out = subprocess.run(shell, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
            return int(out.stdout.strip().splitlines()[-1])

        wait_for(lambda: rounds() >= 20, "twenty worker rounds", proc, log)
        text = log.read_text()
        assert "Task id=" not in text and text.count("away round") == 1 and "1 sent" in text  # only the round that sent
    finally:
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
        else:
            proc.send_signal(signal.SIGTERM)  # what a supervisor does: the script alone
        proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while group_alive(proc.pid):
        assert time.monotonic() < deadline, "the server or the worker outlived scripts/run"
        time.sleep(0.1)
    assert not healthy(port)
