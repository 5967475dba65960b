"""The rules every edge applies the same way: which URLs may become links, what a slug is, id and seq bounds.

Plain constants and functions with no Django import, so the API schemas, the
forms, the dashboard's views, the WebSocket protocol, the CLI, the email digest
and the Web Push payload share one definition. notifications/static/notifications/links.js
is its one home in the browser (a browser cannot import Python), imported by the
dashboard, the bell, the widget and the service worker; tests/test_rules.py runs
all of them on the one table of cases, tests/safe_url_cases.json.
"""

from __future__ import annotations

import re

MAX_SEQ = 2**62  # the bound on every id and seq a client may send: inside PostgreSQL's bigint
MAX_READ_IDS = 1000  # ids in one "mark read", over HTTP or WebSocket
MAX_URL = 2000  # Notification.url's column

_SLUG = r"[-a-zA-Z0-9_]{1,64}"
# `\Z`, not `$`: Python's `$` also matches before a final newline, so "deploys\n" passed.
SLUG_RE = re.compile(_SLUG + r"\Z")
# For pydantic and OpenAPI (Rust and ECMA regex), where `$` is the end of the text and `\Z` does not exist.
SLUG_PATTERN = f"^{_SLUG}$"

# Whitespace and control characters (browsers drop a tab or newline inside a URL, so
# "/\t/evil.example" would become "//evil.example"), and backslashes (read as "/").
_REFUSED_IN_URL = re.compile(r"[\x00-\x20\x7f-\x9f\\\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]")
# Spelled out rather than re.IGNORECASE, which in Python also takes U+017F (long s) for "s"; JS's /i does not.
_SAFE_URL_START = re.compile(r"[Hh][Tt][Tt][Pp][Ss]?://[^/?#]|/(?!/)")


class UnsafeUrl(ValueError):
    """A URL that must not become a link; the message says why."""


def safe_url(value: str) -> str:
    """`value` if it may become a link: an http(s) URL with a host, or a path starting with a single "/".

    "" (no link) is allowed. Anything else raises UnsafeUrl: javascript:, data:,
    "//host" and "/\\host" (another site), relative paths without "/".
    """
    if not value:
        return value
    if _REFUSED_IN_URL.search(value):
        raise UnsafeUrl("must not contain spaces, control characters or backslashes")
    if value.startswith("//"):
        raise UnsafeUrl("a relative URL must start with a single '/'")
    if not _SAFE_URL_START.match(value):
        raise UnsafeUrl("must be an http(s) URL or a path starting with '/'")
    return value


def link(value: str) -> str:
    """The URL as a link target, or "" if it may not be one (rows written before the rule, or by hand)."""
    try:
        return safe_url(value)
    except UnsafeUrl:
        return ""


def is_slug(value: object) -> bool:
    return isinstance(value, str) and SLUG_RE.match(value) is not None
