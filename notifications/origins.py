"""The WebSocket origin check for cookie (session) sockets, judged as Django's CSRF judges an `Origin` header.

Channels' AllowedHostsOriginValidator compares host names only, so a page on
`http://localhost:9999` could open a socket on `http://localhost:8000` with the
user's cookie. Here an origin is trusted when scheme, host and port are the
site's own (the handshake's Host, if ALLOWED_HOSTS has it) or are in
CSRF_TRUSTED_ORIGINS, wildcard subdomains included.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from . import conf


def header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin1"))
    return None


def _site_origin(scope: dict[str, Any]) -> str | None:
    host = header(scope, b"host")
    if host is None:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    # Secure only as the server saw it: behind a proxy that ends TLS, list the public https origin in CSRF_TRUSTED_ORIGINS.
    return f"{'https' if scope.get('scheme') in ('wss', 'https') else 'http'}://{host}"


def trusted_origin(scope: dict[str, Any]) -> bool:
    """Whether the handshake's Origin is the site's own or one of CSRF_TRUSTED_ORIGINS (as CsrfViewMiddleware checks it)."""
    origin = header(scope, b"origin")
    if origin is None:
        return False
    if origin == _site_origin(scope):
        return True
    trusted: list[str] = settings.CSRF_TRUSTED_ORIGINS
    if origin in trusted:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    wildcards = [urlsplit(t) for t in trusted if "*" in t]
    return any(w.scheme == parsed.scheme and is_same_domain(parsed.netloc, w.netloc.lstrip("*")) for w in wildcards)


def allowed_origin(scope: dict[str, Any]) -> bool:
    """Trusted as above, or one of the app origins that may use connection tokens (NOTIFY_ALLOWED_ORIGINS)."""
    return trusted_origin(scope) or header(scope, b"origin") in conf.get().allowed_origins


async def refuse_handshake(receive: Any, send: Any) -> None:
    # Closing before accepting refuses the handshake (the server answers 403); no consumer, no channel layer.
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close"})
