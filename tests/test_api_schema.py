"""Property-based: schemathesis drives every operation of the served OpenAPI schema, in process (WSGI), on PostgreSQL.

No 5xx, and every response (errors included) matches the schema. Bounded so it
stays well under a minute in CI: SCHEMA_EXAMPLES examples per operation
(env NOTIFY_SCHEMA_EXAMPLES to explore more locally).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from notifications import auth
from notifications.models import Subscription, Topic

SCHEMA_EXAMPLES = int(os.environ.get("NOTIFY_SCHEMA_EXAMPLES", "30"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def in_test_transaction(db: None) -> Iterator[None]:
    """Django's WSGI app runs in this thread, inside the test's transaction.

    As Django's test client does, keep the request signals from closing the
    connection (it is not in autocommit inside a test, so they would).
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(in_test_transaction: None, django_user_model: Any, settings: Any) -> dict[str, str]:
    """A few users and topics for generated requests to land on, and a token that may do everything."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    users = [django_user_model.objects.create_user(username=name, password="pw") for name in ("alice", "bob", "1")]
    for slug, public in (("news", True), ("a", True), ("staff", False)):
        topic = Topic.objects.create(slug=slug, title=slug.title(), public=public)
        Subscription.objects.create(user=users[0], topic=topic)
    return {"Authorization": f"Bearer {auth.issue_token(user=users[0], scopes=['publish', 'read', 'webhooks']).secret}"}


# Loaded at import (schemathesis' lazy from_fixture does not run under pytest 9); serving the schema touches no database.
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())


@schema.parametrize()
@settings(max_examples=SCHEMA_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_conforms_to_the_schema(case: Any, world: dict[str, str]) -> None:
    case.call_and_validate(headers=world, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=max(SCHEMA_EXAMPLES // 3, 5), deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_without_credentials_every_operation_answers_401_in_schema(case: Any, in_test_transaction: None) -> None:
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code in {401, 422, 400, 404, 405}
