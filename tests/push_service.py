"""A stand-in for a browser vendor's push service: loopback HTTPS (a self-signed certificate the tests trust
through REQUESTS_CA_BUNDLE), holding each subscription's private key. It checks the VAPID JWT (RFC 8292)
and decrypts the body (RFC 8291, aes128gcm) the way a browser would; /gone/... answers 410, /busy/... 503,
/slow/... answers only once the test sets `slow_release`."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from tests.conftest import free_port


def b64d(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def certificate(directory: str, names: tuple[str, ...] = ()) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (and the DNS `names`), its own CA: (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), *map(x509.DNSName, names)]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class PushService:
    def __init__(self, vapid_public_key: str) -> None:
        self.vapid_public_key = vapid_public_key
        self.port = free_port()
        self.keys: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]] = {}
        self.received: list[dict[str, Any]] = []  # decrypted payloads, with the path and headers
        self.errors: list[str] = []
        self.busy_left = 0
        self.hold: threading.Event | None = None
        self.holding = threading.Event()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified on each push received and each slow one held
        self.slow_release = threading.Event()
        self.slow_held = 0
        self.dir = tempfile.mkdtemp(prefix="push-")
        self.cert, key = certificate(self.dir)
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)

    def start(self) -> PushService:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def subscription(self, name: str) -> dict[str, Any]:
        """A browser's PushSubscription.toJSON() for a new endpoint; this service keeps its private key."""
        key, auth = ec.generate_private_key(ec.SECP256R1()), os.urandom(16)
        path = f"/{name}/{b64e(os.urandom(8))}"
        self.keys[path] = (key, auth)
        public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"https://127.0.0.1:{self.port}{path}", "keys": {"p256dh": b64e(public), "auth": b64e(auth)}}

    @property
    def allowed(self) -> str:
        """Its entry for NOTIFY_PUSH_ENDPOINT_HOSTS: an IP literal on another port than 443 needs an exact one."""
        return f"127.0.0.1:{self.port}"

    def wait_until(self, condition: Callable[[], bool], timeout: float = 10) -> bool:
        """Whether `condition` (read under the lock) came true within `timeout` seconds."""
        with self.changed:
            return self.changed.wait_for(condition, timeout)

    def check_vapid(self, header: str) -> dict[str, Any]:
        params = dict(p.strip().split("=", 1) for p in header.removeprefix("vapid ").split(","))
        assert params["k"] == self.vapid_public_key, "signed with another key"
        head, body, signature = params["t"].split(".")
        raw = b64d(signature)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(params["k"]))
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        claims: dict[str, Any] = json.loads(b64d(body))
        assert claims["aud"] == f"https://127.0.0.1:{self.port}" and claims["exp"] > time.time() and claims["sub"]
        return claims

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if service.hold is not None:
                    service.holding.set()
                    service.hold.wait(30)
                    return self._answer(503)
                if self.path.startswith("/slow/"):
                    with service.changed:
                        service.slow_held += 1
                        service.changed.notify_all()
                    service.slow_release.wait(30)
                if self.path.startswith("/gone/"):
                    return self._answer(410)
                with service.lock:
                    if self.path.startswith("/busy/") and service.busy_left > 0:
                        service.busy_left -= 1
                        return self._answer(503)
                try:
                    service.check_vapid(self.headers["Authorization"])
                    assert self.headers["Content-Encoding"] == "aes128gcm" and int(self.headers["TTL"]) > 0
                    key, auth = service.keys[self.path]
                    plain = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
                    payload = json.loads(plain)
                except Exception as exc:  # the test reads these
                    with service.lock:
                        service.errors.append(repr(exc))
                    return self._answer(400)
                with service.changed:
                    service.received.append({"path": self.path, "payload": payload, "topic": self.headers.get("Topic")})
                    service.changed.notify_all()
                self._answer(201)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
