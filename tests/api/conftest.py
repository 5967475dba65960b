"""The HTTP API tests' client (JSON with a Bearer token), its fixtures, and the one shape of every error."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from notifications import services

API = "/api/v1"


class Api:
    """A test client that speaks JSON with a Bearer token."""

    def __init__(self, token: str | None = None, client: Client | None = None) -> None:
        self.client = client or Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(API + path, params, headers=self.headers)

    def post(self, path: str, body: Any = None, *, key: str | None = None, raw: str | None = None) -> Any:
        headers = {**self.headers, **({"Idempotency-Key": key} if key else {})}
        data = raw if raw is not None else body if body is not None else {}
        return self.client.post(API + path, data, content_type="application/json", headers=headers)

    def put(self, path: str, body: Any) -> Any:
        return self.client.put(API + path, body, content_type="application/json", headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(API + path, headers=self.headers)


@pytest.fixture
def publisher(make_user: Any, token_for: Any) -> Api:
    return Api(token_for(make_user("publisher-svc"), ("publish",)))


@pytest.fixture
def reader(user: Any, token_for: Any) -> Api:
    return Api(token_for(user, ("read",)))


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["fields"], dict)
    return body


def notify_many(user: Any, n: int, **extra: Any) -> list[services.Delivery]:
    return [services.notify(recipient_ids=[user.id], content=services.Content(title=f"n{i}", **extra)).deliveries[0] for i in range(n)]
