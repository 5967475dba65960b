"""`manage.py worker` as a real process over a few hundred due notifications, SIGKILLed twice mid-send
(once while the SMTP server holds a digest unaccepted, once while the push service holds a push):
in the end every due email and push is sent exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from notifications import services
from notifications.management.commands.vapid_keys import new_pair
from tests.away import SmtpServer
from tests.conftest import ROOT, database_url
from tests.push_service import PushService

pytestmark = pytest.mark.usefixtures("fast_passwords")

USERS = 100
PER_USER = 3


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def parts() -> Iterator[tuple[SmtpServer, PushService, dict[str, str]]]:
    public, private = new_pair()
    smtp, push = SmtpServer().start(), PushService(public).start()
    env = {
        "DATABASE_URL": database_url(),
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
        "NOTIFY_EMAIL_DELAY_SECONDS": "0",
        "NOTIFY_PUSH_DELAY_SECONDS": "0",
        "NOTIFY_WORKER_POLL_SECONDS": "0.05",
        "NOTIFY_VAPID_PUBLIC_KEY": public,
        "NOTIFY_VAPID_PRIVATE_KEY": private,
        "NOTIFY_PUSH_ENDPOINT_HOSTS": f"127.0.0.1:{push.port}",
        "REQUESTS_CA_BUNDLE": push.cert,
    }
    yield smtp, push, env
    smtp.stop()
    push.stop()


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (ROOT / "test-artifacts" / "worker.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "manage.py", "worker", "--interval", "0.05"], cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log
    )


def test_killed_twice_mid_batch_every_due_email_and_push_goes_exactly_once(
    transactional_db: None, make_user: Any, parts: tuple[SmtpServer, PushService, dict[str, str]]
) -> None:
    smtp, push, env = parts
    users = [make_user(f"u{i}", email=f"u{i}@example.com") for i in range(USERS)]
    for u in users:
        s = push.subscription("device")
        services.add_push_subscription(user_id=u.id, endpoint=s["endpoint"], p256dh=s["keys"]["p256dh"], auth=s["keys"]["auth"], keep=10)
    for n in range(PER_USER):
        services.notify(recipient_ids=[u.id for u in users], content=services.Content(title=f"n{n}"))

    procs: list[subprocess.Popen[bytes]] = []
    stages: list[tuple[Any, Callable[[], bool]]] = [
        (smtp.inbox, lambda: len(smtp.messages) >= 20),
        (push, lambda: len(push.received) >= 40),
    ]
    for server, after in stages:
        worker = start_worker(env)
        procs.append(worker)

        def mid_batch_or_exited(w: subprocess.Popen[bytes] = worker, a: Callable[[], bool] = after) -> bool:
            return a() or w.poll() is not None

        wait_for(mid_batch_or_exited, "the worker to be mid-batch")
        assert worker.poll() is None, "the worker exited (test-artifacts/worker.log)"
        server.hold = threading.Event()
        wait_for(server.holding.is_set, "a send held unaccepted")
        worker.kill()  # SIGKILL: no clean-up of any kind
        worker.wait(10)
        release, server.hold = server.hold, None
        release.set()
    worker = start_worker(env)
    procs.append(worker)
    try:
        wait_for(lambda: len(smtp.messages) >= USERS and len(push.received) >= USERS * PER_USER, "everything sent")
        worker.terminate()
        worker.wait(10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert Counter(m["To"] for m in smtp.messages) == Counter(f"u{i}@example.com" for i in range(USERS))
    pushes = Counter(r["payload"]["id"] for r in push.received)
    assert len(pushes) == USERS * PER_USER and set(pushes.values()) == {1}
    assert push.errors == []
