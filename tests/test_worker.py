"""`manage.py worker` as a real process over a few hundred due notifications, SIGKILLed twice mid-send
(once while the SMTP server holds a digest unaccepted, once while the push service holds a push):
in the end every due email and push is sent exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import websockets.sync.client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from notifications import services
from notifications.management.commands.vapid_keys import new_pair
from notifications.models import Notification
from notifications.services import snooze
from tests.away import SmtpServer
from tests.conftest import KILLS_AGAINST_THE_CLOCK, ROOT, DaphneServer, database_url
from tests.push_service import PushService

pytestmark = [pytest.mark.usefixtures("fast_passwords"), KILLS_AGAINST_THE_CLOCK]

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
    # One user at a time: what this checks is that a kill repeats nothing the push service took
    # earlier in a batch. With several users sent to at once, each send in flight between the
    # service's answer and our COMMIT could repeat once (docs/channels.md).
    env = {**env, "NOTIFY_PUSH_CONCURRENCY": "1"}
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


def rounds(status: str) -> list[Any]:
    from django_tasks_db.models import DBTaskResult

    return list(DBTaskResult.objects.filter(queue_name="away", status=status))


def held_round() -> Any:
    """The RUNNING email round (the one whose send the SMTP server holds)."""
    [row] = [r for r in rounds("RUNNING") if r.args_kwargs["args"] == ["email"]]
    return row


def test_a_worker_killed_mid_round_is_recovered_by_a_running_worker_and_by_a_new_one(
    transactional_db: None, make_user: Any, parts: tuple[SmtpServer, PushService, dict[str, str]]
) -> None:
    smtp, _, env = parts
    env = {**env, "NOTIFY_WORKER_LOST_SECONDS": "3600"}  # only "its process is gone" can recover within the test
    first = [make_user(f"a{i}", email=f"a{i}@example.com") for i in range(3)]
    second = [make_user(f"b{i}", email=f"b{i}@example.com") for i in range(3)]
    procs: list[subprocess.Popen[bytes]] = []

    def worker(*extra: str) -> subprocess.Popen[bytes]:
        log = (ROOT / "test-artifacts" / "worker.log").open("ab")
        command = [sys.executable, "manage.py", "worker", "--interval", "0.05", "--channels", "email", *extra]
        procs.append(subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log))
        return procs[-1]

    def hold_and_kill_the_holder(users: list[Any]) -> Any:
        smtp.inbox.holding.clear()
        smtp.inbox.hold = threading.Event()
        services.notify(recipient_ids=[u.id for u in users], content=services.Content(title="hello"))
        wait_for(smtp.inbox.holding.is_set, "a digest held unaccepted")
        row = held_round()
        pid = int(row.worker_ids[-1].split(":")[1])
        holder = next(p for p in procs if p.pid == pid)
        holder.kill()  # SIGKILL, mid-round: its row stays RUNNING
        holder.wait(10)
        release, smtp.inbox.hold = smtp.inbox.hold, None
        release.set()
        return row

    try:
        # 1. While a worker runs, another one dies mid-round: the live one's periodic look recovers it.
        worker("--recover-interval", "0.2")
        lost = hold_and_kill_the_holder(first)
        survivor = worker("--recover-interval", "0.2")
        wait_for(lambda: all(r.id != lost.id for r in rounds("RUNNING")), "the lost round recovered by the running worker")
        wait_for(lambda: len(smtp.messages) >= 3, "the first users' digests")
        # 2. The only worker dies mid-round: a new one recovers it on start (its periodic look is far off).
        assert survivor.poll() is None
        lost_again = hold_and_kill_the_holder(second)
        assert lost_again.id in {r.id for r in rounds("RUNNING")}
        worker("--recover-interval", "3600")
        wait_for(lambda: all(r.id != lost_again.id for r in rounds("RUNNING")), "the lost round recovered on start")
        wait_for(lambda: len(smtp.messages) >= 6, "the second users' digests")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
    failed = {r.id: r for r in rounds("FAILED")}
    assert {lost.id, lost_again.id} <= set(failed)
    assert failed[lost.id].exception_class_path == "notifications.tasks.WorkerLost"
    assert Counter(m["To"] for m in smtp.messages) == Counter(u.email for u in first + second), "each digest once"


@pytest.mark.django_db
def test_recover_lost_goes_by_the_process_on_this_host_and_by_age_elsewhere() -> None:
    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    from notifications import tasks

    me = tasks.new_worker_id()
    host = me.split(":")[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)

    def running(worker: str, *, minutes_ago: float = 0) -> Any:
        row = DBTaskResult.objects.get(id=tasks.deliver_due.enqueue("email").id)
        row.claim(worker)
        DBTaskResult.objects.filter(id=row.id).update(started_at=timezone.now() - timedelta(minutes=minutes_ago))
        return row.id

    alive_here = running(me)
    gone_here = running(f"{host}:{dead.pid}:x")
    elsewhere_recent = running("other-host:1:x", minutes_ago=5)
    elsewhere_old = running("other-host:1:y", minutes_ago=16)

    assert tasks.recover_lost(me=me) == 2
    status = dict(DBTaskResult.objects.values_list("id", "status"))
    assert status[alive_here] == status[elsewhere_recent] == "RUNNING"
    assert status[gone_here] == status[elsewhere_old] == "FAILED"
    assert DBTaskResult.objects.filter(status="READY").count() == 1, "one next round for the channel"


@pytest.mark.server
def test_the_worker_wakes_a_snooze_at_its_time_and_sweeps_up_one_whose_wake_was_lost(
    daphne: DaphneServer, make_user: Any, token_for: Any
) -> None:
    """Through a real socket on a real daphne process: each comes back live, at a new seq, unread, created anew."""
    alice = make_user("alice")
    first, second = (services.notify(recipient_ids=[alice.id], content=services.Content(title=t)).deliveries[0].id for t in "ab")
    token = token_for(alice, ("read",))
    workers: list[subprocess.Popen[bytes]] = []
    with websockets.sync.client.connect(f"{daphne.ws_url}?since=2", additional_headers={"Authorization": f"Bearer {token}"}) as ws:

        def next_of(kind: str) -> dict[str, Any]:
            while True:
                frame = json.loads(ws.recv(timeout=30))
                if frame["type"] == kind:
                    return dict(frame)

        def snooze_for_a_second(notification_id: int) -> datetime:
            until = timezone.now() + timedelta(seconds=1)
            ws.send(json.dumps({"type": "snooze", "ids": [notification_id], "until": until.isoformat(), "id": f"s{notification_id}"}))
            assert next_of("reply")["ok"]
            return until

        try:
            workers.append(start_worker(daphne.env()))  # the daphne process's database and channel layer
            untils = [snooze_for_a_second(first)]  # seq 3
            woken = [next_of("notification")]  # by its own task, at its time

            untils.append(until := snooze_for_a_second(second))  # seq 5
            DBTaskResult.objects.filter(task_path=f"{snooze.__name__}.wake_task", status="READY").delete()  # lost with a worker
            wait_for(lambda: timezone.now() > until, "the snooze to end")
            workers[0].terminate()
            workers[0].wait(30)
            assert Notification.objects.get(id=second).snoozed_until is not None  # nothing left that would wake it...
            workers.append(start_worker(daphne.env()))
            woken.append(next_of("notification"))  # ...but the next worker's sweep
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(30)
    assert [(n["id"], n["seq"], n["read"]) for n in woken] == [(first, 4, False), (second, 6, False)]
    assert all(datetime.fromisoformat(n["created_at"]) >= t for n, t in zip(woken, untils, strict=True))  # back as new
    assert not Notification.objects.filter(snoozed_until__isnull=False).exists()
