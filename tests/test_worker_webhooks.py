"""Webhooks for answers to notifications' actions from a real `manage.py worker` process, SIGKILLed while the
receiver holds a request it has accepted, then restarted: the receiver (loopback HTTPS, trusted through
NOTIFY_WEBHOOK_CA_FILE, verifying every signature and timestamp) counts exactly one accepted delivery per answer,
and sees the same webhook-id on the retry; 500s on the way are retried with backoff."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from notifications import services
from notifications.models import WebhookAttempt, WebhookEvent, WebhookMessage
from notifications.services import webhooks
from tests.conftest import KILLS_AGAINST_THE_CLOCK, ROOT, database_url
from tests.test_worker import wait_for
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.usefixtures("fast_passwords"), KILLS_AGAINST_THE_CLOCK]  # a worker SIGKILLed mid-send

MESSAGES = 12


@pytest.fixture
def receiver(settings: Any) -> Iterator[WebhookReceiver]:
    r = WebhookReceiver().start()
    settings.WEBHOOKS = {"ALLOW_PRIVATE": True}  # for creating the endpoint in this process
    yield r
    r.stop()


def start_worker(receiver: WebhookReceiver) -> subprocess.Popen[bytes]:
    env = {
        "DATABASE_URL": database_url(),
        "NOTIFY_WEBHOOK_ALLOW_PRIVATE": "1",
        "NOTIFY_WEBHOOK_CA_FILE": receiver.cert,  # the certificate made for this run: the worker trusts nothing else
        "NOTIFY_WEBHOOK_RETRY_SECONDS": "0.3,0.6,1,2,4",
        "NOTIFY_WEBHOOK_CONCURRENCY": "3",
        "NOTIFY_WORKER_POLL_SECONDS": "0.05",
    }
    log = (ROOT / "test-artifacts" / "worker.log").open("ab")
    command = [sys.executable, "manage.py", "worker", "--interval", "0.05", "--queues", "webhooks"]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=log)


def test_a_worker_killed_mid_send_delivers_each_message_once_with_a_stable_webhook_id(
    transactional_db: None, make_user: Any, receiver: WebhookReceiver
) -> None:
    from django_tasks_db.models import DBTaskResult

    user = make_user("alice")
    endpoint = webhooks.create_endpoint(url=receiver.url, events=[WebhookEvent.ACTION], created_by=None)
    receiver.secret = endpoint.secret
    for i in range(MESSAGES):  # each a notification answered by its user: one message per answer
        action = {"id": f"a{i}", "label": f"A{i}", "style": "primary"}
        content = services.Content.checked(title=f"Deploy {i}?", actions=[action])
        delivery = services.notify(recipient_ids=[user.id], content=content).deliveries[0]
        assert services.answer_action(user_id=user.id, seq=delivery.seq, action_id=f"a{i}").ok
        assert not services.answer_action(user_id=user.id, seq=delivery.seq, action_id=f"a{i}").seq, "the same answer again: no message"
    ids = set(WebhookMessage.objects.values_list("id", flat=True))
    assert len(ids) == MESSAGES

    receiver.hold = threading.Event()  # the first requests are accepted, then held unanswered
    first = start_worker(receiver)
    procs = [first]
    try:
        assert receiver.holding.wait(60), "no request reached the receiver (test-artifacts/worker.log)"
        first.kill()  # SIGKILL, mid-send: no clean-up of any kind
        first.wait(10)
        held = {r["id"] for r in receiver.received}
        release, receiver.hold = receiver.hold, None
        release.set()
        receiver.fail = 2  # and the next two requests answer 500: retried with backoff
        procs.append(start_worker(receiver))
        assert receiver.wait_until(lambda: set(receiver.accepted) == ids, 60), "not every message was accepted"
        wait_for(lambda: not WebhookMessage.objects.exclude(state=WebhookMessage.State.DELIVERED).exists(), "every message recorded")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)

    assert receiver.errors == [], "every request verified (signature and timestamp)"
    assert sorted(receiver.accepted) == sorted(ids), "exactly one accepted delivery per message"
    assert {b["data"]["action"] for b in receiver.accepted.values()} == {f"a{i}" for i in range(MESSAGES)}
    came = Counter(r["id"] for r in receiver.received)
    assert held and all(came[i] >= 2 for i in held), "each held message came again, under the same webhook-id"
    assert [r["status"] for r in receiver.received].count(500) == 2
    # The killed attempts left no record; each 500 is one, and each message ends with one 200.
    attempts = Counter(WebhookAttempt.objects.values_list("status_code", flat=True))
    assert attempts == {200: MESSAGES, 500: 2}
    lost = DBTaskResult.objects.filter(queue_name="webhooks", exception_class_path="notifications.tasks.WorkerLost")
    assert lost.count() == 1, "the killed round was recovered by the new worker"
