"""Where the server may send a request of its own to a URL someone else gave it: the one home for that rule.

Web Push endpoints (delivery/subscription.py adds its allow-list of push
services) and webhook endpoints (services/webhooks.py) share the URL's shape:
https, no credentials, nothing two parsers could read differently. URLs are
read by urllib3's parser, the one that sends: a check that parses differently
from the sender is a check of another URL ("https://localhost\\.x.com/" is
"localhost" to urllib3).

A webhook may name any public host, so its address is checked too: once when
the endpoint is created, and again at each send after resolving the name, and
the request then goes to the very address that was checked (`post`), so a DNS
answer that changes between the check and the connect (rebinding) cannot lead
it to a private one. Loopback and private addresses, and plain http, are let
through only when the caller says so (NOTIFY_WEBHOOK_ALLOW_PRIVATE, for
development and tests); link-local (cloud metadata), multicast, unspecified
and reserved ones never are.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, LocationParseError
from urllib3.util import Timeout, parse_url

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Backslashes (read as "/" by some parsers, not by others), whitespace, control characters and
# anything past ASCII (IDNA look-alikes).
_REFUSED_IN_URL = re.compile(r"[^!-~]|\\")
# A DNS name whose last label starts with a letter: "127.1" or "2130706433" reach 127.0.0.1 through
# getaddrinfo, and a wildcard entry must never match an IP literal.
_DNS_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}\Z")
# One label ("localhost", a compose service's name): only where private hosts are allowed.
_SINGLE_LABEL = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
MAX_URL = 2000
EXCERPT_BYTES = 500


class Refused(ValueError):
    """The server must not send to this URL; the message says why."""


@dataclass(frozen=True)
class Target:
    """A URL as urllib3 sends to it."""

    scheme: str
    host: str  # lower case; an IPv6 literal in brackets
    port: int
    netloc: str  # the Host header
    request_uri: str  # path and query

    @property
    def address_literal(self) -> IpAddress | None:
        try:
            return ipaddress.ip_address(self.host.strip("[]"))
        except ValueError:
            return None


def parse(url: str, *, allow_http: bool = False) -> Target:
    """The URL's target if its shape is one the server may send to: https (or http with `allow_http`), a host,
    no credentials, no fragment, nothing a parser could read two ways. Raises Refused."""
    if len(url) > MAX_URL:
        raise Refused(f"must be at most {MAX_URL} characters")
    if _REFUSED_IN_URL.search(url):
        raise Refused("must not contain backslashes, spaces, control or non-ASCII characters")
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise Refused("not a URL") from None
    if parsed.scheme != "https" and not (allow_http and parsed.scheme == "http"):
        raise Refused("must be an https URL")
    if parsed.auth is not None:
        raise Refused("must not carry credentials")
    if not parsed.host:
        raise Refused("must name a host")
    if parsed.fragment is not None:
        raise Refused("must not carry a fragment")
    if parsed.port == 0:
        raise Refused("must not name port 0")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return Target(parsed.scheme, parsed.host, port, parsed.netloc or parsed.host, parsed.request_uri)


def is_dns_name(host: str) -> bool:
    return _DNS_NAME.match(host) is not None


def address_refusal(address: IpAddress, *, allow_private: bool) -> str:
    """Why the server must not connect to `address`, or ""."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return address_refusal(embedded, allow_private=allow_private)
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if address.is_unspecified:
        return f"{address} is not a host's address"
    if address.is_loopback:  # before is_reserved, which ::1 also is
        return "" if allow_private else f"{address} is a loopback address"
    if address.is_reserved:
        return f"{address} is a reserved address"
    if not address.is_global:
        return "" if allow_private else f"{address} is a private address"
    return ""


def host_refusal(target: Target, *, allow_private: bool) -> str:
    """Why `target`'s host cannot be a public one by its spelling alone, or ""."""
    if target.address_literal is not None:
        return address_refusal(target.address_literal, allow_private=allow_private)
    if is_dns_name(target.host) or (allow_private and _SINGLE_LABEL.match(target.host)):
        return ""
    return "must name a public host: a DNS name with a dot, or an IP address"


def resolve(target: Target, *, allow_private: bool) -> IpAddress:
    """The address to connect to: every address the host resolves to must be allowed (a name with one
    private address among public ones is refused). Raises Refused."""
    refusal = host_refusal(target, allow_private=allow_private)
    if refusal:
        raise Refused(refusal)
    try:
        answers = socket.getaddrinfo(target.host.strip("[]"), target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Refused(f"{target.host} does not resolve") from None
    addresses = [ipaddress.ip_address(str(a[4][0]).partition("%")[0]) for a in answers]
    if not addresses:
        raise Refused(f"{target.host} does not resolve")
    for address in addresses:
        refusal = address_refusal(address, allow_private=allow_private)
        if refusal:
            raise Refused(f"{target.host} resolves to {refusal.removeprefix(str(address) + ' is ')} ({address})")
    return addresses[0]


def check(url: str, *, allow_private: bool) -> Target:
    """The whole rule for a URL the server will POST to (a webhook's): shape, then the addresses its host
    resolves to now. Raises Refused."""
    target = parse(url, allow_http=allow_private)
    resolve(target, allow_private=allow_private)
    return target


@dataclass(frozen=True)
class Answer:
    status: int
    excerpt: str  # the start of the body, for a log


class SendFailed(Exception):
    """No HTTP answer: refused by the rule, no connection, a timeout, a TLS failure."""


def post(url: str, body: bytes, headers: dict[str, str], *, allow_private: bool, timeout: float, ca_file: str) -> Answer:
    """POST `body` to `url` after checking it in full, to the address checked. Never follows a redirect
    (it could lead anywhere). Each connect and each read wait at most `timeout` seconds; only the first
    EXCERPT_BYTES of the answer are read."""
    try:
        target = parse(url, allow_http=allow_private)
        address = resolve(target, allow_private=allow_private)
    except Refused as exc:
        raise SendFailed(f"refused: {exc}") from None
    pool: HTTPConnectionPool
    limits = Timeout(connect=timeout, read=timeout)
    if target.scheme == "https":
        name = target.host.strip("[]")
        pool = HTTPSConnectionPool(
            str(address), target.port, timeout=limits, retries=False, cert_reqs="CERT_REQUIRED", ca_certs=ca_file,
            server_hostname=name, assert_hostname=name,
        )  # fmt: skip
    else:
        pool = HTTPConnectionPool(str(address), target.port, timeout=limits, retries=False)
    try:
        with pool:
            response = pool.urlopen(
                "POST", target.request_uri, body=body, headers={**headers, "Host": target.netloc},
                redirect=False, preload_content=False, assert_same_host=False,
            )  # fmt: skip
            excerpt = response.read(EXCERPT_BYTES, decode_content=False)
            response.release_conn()
    except (HTTPError, OSError) as exc:
        raise SendFailed(_describe(exc)) from None
    return Answer(response.status, excerpt.decode("utf-8", "replace"))


def _describe(exc: BaseException) -> str:
    """A short reason for the attempt log: urllib3 wraps the cause in layers of its own."""
    while exc.__context__ is not None and isinstance(exc, HTTPError):
        exc = exc.__context__
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
