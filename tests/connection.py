"""Connection tokens as an app's backend makes them (docs/integrate.md), for the tests beside the app."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

SECRET = "an-app-and-the-service-share-this-32+-char-secret"
APP_ORIGIN = "http://app.example:9000"


def sign(username: str, *, expires_in: float = 600, secret: str = SECRET, **claims: Any) -> str:
    return jwt.encode({"sub": username, "exp": int(time.time() + expires_in), **claims}, secret, algorithm="HS256")


@pytest.fixture
def beside_an_app(settings: Any) -> None:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "CONNECTION_SECRET": SECRET, "ALLOWED_ORIGINS": [APP_ORIGIN]}
    settings.CORS_ALLOWED_ORIGINS = [APP_ORIGIN]
