"""/healthz, /readyz and /metrics (notifications/api/health.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from notifications.models import Topic
from tests.api.conftest import notify_many

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]


def test_healthz_and_readyz() -> None:
    assert Client().get("/healthz").json() == {"status": "ok", "checks": {}}
    r = Client().get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"]["database"] == "ok"
    assert r.json()["checks"]["redis"] in {"ok", "not configured"}


def test_readyz_is_503_when_redis_is_unreachable(settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    r = Client().get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert r.json()["checks"]["redis"].startswith("error") and r.json()["checks"]["database"] == "ok"


def test_metrics_in_prometheus_text_format(user: Any) -> None:
    notify_many(user, 3)
    Topic.objects.create(slug="t", title="T")
    r = Client().get("/metrics")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.content.decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert (samples["notify_published_total"], samples["notify_unread"], samples["notify_topics"]) == ("3", "3", "1")
    assert "# TYPE notify_connections gauge" in text and "# TYPE notify_pushes_sent_total counter" in text
    assert samples["notify_presence_up"] == "1"
