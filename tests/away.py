"""Real parts for the away-channel tests: an SMTP server (aiosmtpd) and settings with tiny delays."""

from __future__ import annotations

import email
import email.policy
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port


class Inbox:
    """aiosmtpd's handler: keeps every message it accepted (a 250 answer) as a parsed EmailMessage."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        self.hold: threading.Event | None = None  # set by a test: the next DATA waits, unaccepted
        self.holding = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hold is not None:
            self.holding.set()
            self.hold.wait(30)
            return "451 try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.inbox = Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        with self.inbox.lock:
            return list(self.inbox.messages)


def away_settings(**overrides: Any) -> dict[str, Any]:
    return {
        "PUBLIC_URL": "http://testserver",
        "EMAIL_DELAY_SECONDS": 0,
        "EMAIL_DIGEST_SECONDS": 300,
        "PUSH_DELAY_SECONDS": 0,
        "PUSH_TTL_SECONDS": 60,
        "VAPID_PUBLIC_KEY": "",
        "VAPID_PRIVATE_KEY": "",
        "VAPID_SUBJECT": "mailto:ops@example.com",
        "PUSH_ENDPOINT_HOSTS": [],  # the push service's own entry: PushService.allowed
        "WORKER_POLL_SECONDS": 0.05,
        **overrides,
    }


def use_smtp(settings: Any, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())
