"""What a Web Push subscription may be: the endpoint the server will POST to, and the keys it encrypts with.

Checked where a browser subscribes (api/away.py) and again before each send
(webpush.py), so a row stored before a rule, or under an allow-list changed
since, is never called. The URL's shape is the rule every URL the server sends
to keeps (outbound.py); on top of it, a push endpoint must be one of the
browsers' push services, named by its DNS name on https's port.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography.hazmat.primitives.asymmetric import ec

from .. import outbound

_BASE64URL = re.compile(r"[-_A-Za-z0-9]+={0,2}\Z")
P256DH_BYTES = 65  # an uncompressed P-256 point (RFC 8291)
AUTH_BYTES = 16


def endpoint_refusal(endpoint: str, hosts: tuple[str, ...]) -> str:
    """Why the server must not POST to `endpoint`, or "" if it may.

    https on port 443, no credentials, and a DNS name on `hosts` ("*.example.com" takes its
    subdomains). An entry naming a host exactly, with its port if not 443, also lets in an IP
    literal, a bare name or another port: the loopback push service of the tests, never a default.
    """
    try:
        target = outbound.parse(endpoint)
    except outbound.Refused as exc:
        return str(exc)
    host, port = target.host, target.port
    if (host if port == 443 else f"{host}:{port}") in hosts:
        return ""
    if port != 443:
        return "must use https's default port"
    if not outbound.is_dns_name(host):
        return "must name a push service's host, not an address"
    if not any(h.startswith("*.") and host.endswith(h[1:]) for h in hosts):
        return "not an allowed push service"
    return ""


def decode_key(value: str, *, size: int) -> bytes:
    """base64url (padding optional) of exactly `size` bytes; ValueError says what is wrong."""
    if not _BASE64URL.match(value):
        raise ValueError("must be base64url")
    bare = value.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except binascii.Error:
        raise ValueError("must be base64url") from None
    if len(raw) != size:
        raise ValueError(f"must be {size} bytes")
    return raw


def encode_key(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def p256dh_key(value: str) -> str:
    """The browser's public key, canonical (unpadded): a 65-byte uncompressed point on P-256."""
    raw = decode_key(value, size=P256DH_BYTES)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ValueError("must be an uncompressed P-256 point (65 bytes, on the curve)") from None
    return encode_key(raw)


def auth_key(value: str) -> str:
    """The browser's auth secret, canonical (unpadded): 16 bytes."""
    return encode_key(decode_key(value, size=AUTH_BYTES))


def subscription_refusal(endpoint: str, p256dh: str, auth: str, hosts: tuple[str, ...]) -> str:
    """Why a stored subscription cannot be sent to, or ""."""
    refusal = endpoint_refusal(endpoint, hosts)
    if refusal:
        return f"endpoint {refusal}"
    for name, check, value in (("p256dh", p256dh_key, p256dh), ("auth", auth_key, auth)):
        try:
            check(value)
        except ValueError as exc:
            return f"{name} {exc}"
    return ""
