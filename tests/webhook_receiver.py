"""A publisher's webhook receiver: loopback HTTPS with a self-signed certificate made now (the worker trusts it
through NOTIFY_WEBHOOK_CA_FILE), verifying every request as the Standard Webhooks specification tells a receiver
to, with its own library: signature, and a timestamp within five minutes. It de-duplicates by webhook-id, so
`accepted` holds each message once however often it came; `received` holds every verified request.

`fail` answers the next N requests 500; `hold` keeps a request unanswered (after it was accepted) until set."""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import free_port
from tests.push_service import certificate

# A name only the tests' resolver knows (test_webhooks.py), in the certificate beside 127.0.0.1.
TEST_HOST = "hooks.receiver.test"


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.secret = ""  # set once the endpoint is created: the POST answer is where it is shown
        self.received: list[dict[str, Any]] = []  # every verified request: id, timestamp, headers, body
        self.accepted: dict[str, dict[str, Any]] = {}  # webhook-id -> the body, the first time it came
        self.errors: list[str] = []  # requests that failed verification
        self.fail = 0
        self.hold: threading.Event | None = None
        self.holding = threading.Event()
        self.changed = threading.Condition()
        self.cert, key = certificate(tempfile.mkdtemp(prefix="webhooks-"), names=(TEST_HOST,))
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/hooks"

    def start(self) -> WebhookReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_until(self, condition: Callable[[], bool], timeout: float = 30) -> bool:
        with self.changed:
            return self.changed.wait_for(condition, timeout)

    def _handle(self, headers: dict[str, str], body: bytes) -> int:
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            with self.changed:
                self.errors.append(f"{headers.get('webhook-id')}: {exc}")
                self.changed.notify_all()
            return 400
        with self.changed:
            if self.fail > 0:
                self.fail -= 1
                status = 500
            else:
                status = 200
                self.accepted.setdefault(headers["webhook-id"], payload)
            self.received.append(
                {"id": headers["webhook-id"], "timestamp": int(headers["webhook-timestamp"]), "host": headers.get("host"), "status": status}
            )
            self.changed.notify_all()
        return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._handle({k.lower(): v for k, v in self.headers.items()}, body)
                hold = receiver.hold
                if hold is not None and status == 200:
                    receiver.holding.set()
                    hold.wait(60)
                answer = json.dumps({"ok": status == 200}).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the sender is gone (killed while we held its request)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
