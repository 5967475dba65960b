"""`python manage.py vapid_keys`: print a new VAPID key pair as NOTIFY_VAPID_* settings (docs/channels.md)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management.base import BaseCommand


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_pair() -> tuple[str, str]:
    """(public, private): the uncompressed P-256 point the browser's applicationServerKey takes, and the raw scalar."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url(public), b64url(key.private_numbers().private_value.to_bytes(32, "big"))


class Command(BaseCommand):
    help = "Generate a VAPID key pair for Web Push; prints the two environment variables to set."

    def handle(self, *args: Any, **options: Any) -> None:
        public, private = new_pair()
        self.stdout.write(f"NOTIFY_VAPID_PUBLIC_KEY={public}\nNOTIFY_VAPID_PRIVATE_KEY={private}\n")
