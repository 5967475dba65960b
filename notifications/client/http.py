"""The HTTP side: publish and read over API v1 with a Bearer token, standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .listener import Listener
from .values import Action, ApiError, InboxPage, Notification, PublishResult


class Client:
    """HTTP API v1 with a Bearer token. Blocking calls: in asyncio code use `await asyncio.to_thread(client.publish, ...)`."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"Client({self.base_url!r})"

    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + "/api/v1" + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)
            except ValueError:
                err = {}
            raise ApiError(
                e.code, err.get("code", "http_error"), err.get("message", raw[:200].decode(errors="replace")), err.get("fields")
            ) from None

    def publish(
        self,
        *,
        title: str,
        users: Sequence[int | str] = (),
        topic: str | None = None,
        body: str = "",
        kind: str = "message",
        data: dict[str, Any] | None = None,
        url: str = "",
        level: str = "info",
        expires_at: str | None = None,
        actions: Sequence[Action | dict[str, str]] = (),
        group_key: str = "",
        idempotency_key: str | None = None,
    ) -> PublishResult:
        """Publish to users (ids or usernames) or to a topic. `created` is False for a repeated idempotency key."""
        payload = notification_payload(
            title=title, users=users, topic=topic, body=body, kind=kind, data=data, url=url, level=level, expires_at=expires_at,
            actions=actions, group_key=group_key,
        )  # fmt: skip
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        _, result = self.request("POST", "/notifications", payload, headers=headers)
        return PublishResult.from_dict(result)

    def publish_batch(self, notifications: Sequence[dict[str, Any]], *, idempotency_key: str | None = None) -> list[PublishResult]:
        """Up to 1,000 payloads (see notification_payload) in one transaction."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        _, result = self.request("POST", "/notifications/batch", {"notifications": list(notifications)}, headers=headers)
        return [PublishResult.from_dict(r) for r in result["results"]]

    def inbox(
        self,
        *,
        since: int | None = None,
        before: int | None = None,
        limit: int = 50,
        unread: bool = False,
        topic: str | None = None,
        group_key: str | None = None,
    ) -> InboxPage:
        """A page of my notifications; with group_key, that group's members."""
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since
        if before is not None:
            params["before"] = before
        if unread:
            params["unread"] = "true"
        if topic:
            params["topic"] = topic
        if group_key is not None:
            params["group_key"] = group_key
        _, page = self.request("GET", "/me/notifications?" + urllib.parse.urlencode(params))
        return InboxPage(
            [Notification.from_dict(n) for n in page["items"]], page["head_seq"], page["unread"], page["next_before"], page["next_since"]
        )

    def mark_read(self, ids: Sequence[int] = (), *, everything: bool = False) -> dict[str, Any]:
        _, result = self.request("POST", "/me/notifications/read", {"all": True} if everything else {"ids": list(ids)})
        return dict(result)

    def unread_count(self) -> int:
        _, result = self.request("GET", "/me/unread-count")
        return int(result["unread"])

    def ws_ticket(self) -> str:
        _, result = self.request("POST", "/ws-ticket")
        return str(result["ticket"])

    @property
    def ws_url(self) -> str:
        return ws_url_for(self.base_url)

    def listen(self, *, since: int | None = None, **options: Any) -> Listener:
        """A listener on this server as this token's user; see Listener for the options."""
        return Listener(self.ws_url, token=self.token, since=since, http=self, **options)


def notification_payload(
    *,
    title: str,
    users: Sequence[int | str] = (),
    topic: str | None = None,
    body: str = "",
    kind: str = "message",
    data: dict[str, Any] | None = None,
    url: str = "",
    level: str = "info",
    expires_at: str | None = None,
    actions: Sequence[Action | dict[str, str]] = (),
    group_key: str = "",
) -> dict[str, Any]:
    """A POST /notifications body. Each keyword is a field of the server's (tests/test_frames.py checks the list)."""
    payload: dict[str, Any] = {"title": title, "kind": kind, "body": body, "data": data or {}, "url": url, "level": level}
    if topic is not None:
        payload["topic"] = topic
    else:
        payload["users"] = list(users)
    if expires_at is not None:
        payload["expires_at"] = expires_at
    if actions:
        payload["actions"] = [asdict(a) if isinstance(a, Action) else dict(a) for a in actions]
    if group_key:
        payload["group_key"] = group_key
    return payload


def ws_url_for(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urllib.parse.urlunsplit((scheme, parts.netloc, "/ws/notifications/", "", ""))
