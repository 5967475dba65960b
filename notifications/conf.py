"""The service's settings, read lazily from settings.NOTIFICATIONS."""

from dataclasses import dataclass

from django.conf import settings
from requests import certs

# The django-tasks queue of the worker (`manage.py worker`): away-channel rounds and snooze wakes.
TASK_QUEUE = "away"


@dataclass(frozen=True)
class RateLimits:
    """HTTP abuse limits, each a django-ratelimit rate ("600/m") or None for none (notifications/rate_limits.py)."""

    publish: str | None
    tickets: str | None
    me: str | None
    api_address: str | None
    login_address: str | None
    login_username: str | None


@dataclass(frozen=True)
class NotificationSettings:
    heartbeat_seconds: int
    replay_page_size: int
    retention_days: int
    client_event_days: int  # how long a client's event id is remembered (a repeat within it is not applied again)
    max_frame_bytes: int
    client_frames_per_second: int
    client_frame_burst: int
    send_buffer_frames: int
    send_buffer_bytes: int
    drain_seconds: float
    max_connecting: int
    ticket_seconds: int
    connection_secret: str  # signs the JWTs an app's backend gives its browsers (connection_tokens.py)
    allowed_origins: tuple[str, ...]  # an app's origins that may open sockets with those and call the API (CORS)
    rate_limits: RateLimits
    trusted_proxies: int


@dataclass(frozen=True)
class WebhookSettings:
    """Outbound webhooks (docs/webhooks.md)."""

    allow_private: bool  # loopback and private addresses, and plain http: development and tests only
    retry_seconds: tuple[float, ...]  # the wait before each retry; the message fails after the last
    timeout_seconds: float
    concurrency: int
    ca_file: str  # the PEM bundle a receiver's certificate must chain to


def webhooks() -> WebhookSettings:
    raw = getattr(settings, "WEBHOOKS", {})
    return WebhookSettings(
        allow_private=bool(raw.get("ALLOW_PRIVATE", False)),
        retry_seconds=tuple(float(s) for s in raw.get("RETRY_SECONDS") or DEFAULT_WEBHOOK_RETRY_SECONDS),
        timeout_seconds=float(raw.get("TIMEOUT_SECONDS", 10.0)),
        concurrency=int(raw.get("CONCURRENCY", 8)),
        ca_file=raw.get("CA_FILE") or certs.where(),
    )


# Svix's schedule (the authors of Standard Webhooks): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 28 hours).
DEFAULT_WEBHOOK_RETRY_SECONDS = (5, 300, 1800, 7200, 18000, 36000, 36000)


def redis_url() -> str:
    """settings.REDIS_URL, or "" on the embedded default (no Redis)."""
    return str(getattr(settings, "REDIS_URL", ""))


def get() -> NotificationSettings:
    raw = getattr(settings, "NOTIFICATIONS", {})
    return NotificationSettings(
        heartbeat_seconds=raw.get("HEARTBEAT_SECONDS", 25),
        replay_page_size=raw.get("REPLAY_PAGE_SIZE", 1000),
        retention_days=raw.get("RETENTION_DAYS", 90),
        client_event_days=raw.get("CLIENT_EVENT_DAYS", 30),
        max_frame_bytes=raw.get("MAX_FRAME_BYTES", 64 * 1024),
        client_frames_per_second=raw.get("CLIENT_FRAMES_PER_SECOND", 20),
        client_frame_burst=raw.get("CLIENT_FRAME_BURST", 60),
        send_buffer_frames=raw.get("SEND_BUFFER_FRAMES", 2000),
        send_buffer_bytes=raw.get("SEND_BUFFER_BYTES", 8 * 1024 * 1024),
        drain_seconds=raw.get("DRAIN_SECONDS", 3.0),
        max_connecting=raw.get("MAX_CONNECTING", 64),
        ticket_seconds=raw.get("TICKET_SECONDS", 60),
        connection_secret=raw.get("CONNECTION_SECRET", ""),
        allowed_origins=tuple(raw.get("ALLOWED_ORIGINS", ())),
        rate_limits=RateLimits(
            publish=raw.get("RATE_PUBLISH", "600/m"),
            tickets=raw.get("RATE_TICKETS", "60/m"),
            me=raw.get("RATE_ME", "600/m"),
            api_address=raw.get("RATE_API_ADDRESS", "3000/m"),
            login_address=raw.get("RATE_LOGIN_ADDRESS", "10/m"),
            login_username=raw.get("RATE_LOGIN_USERNAME", "10/m"),
        ),
        trusted_proxies=raw.get("TRUSTED_PROXIES", 0),
    )


# One process, no server to install: a host that names no channel layer gets this one.
# Several processes (or hosts) need a shared layer: channels_redis (docs/deployment.md).
DEFAULT_CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 5000}}}


def apply_defaults() -> None:
    """Settings of the libraries the app stands on that a host may leave out (settings.NOTIFICATIONS has get()'s defaults)."""
    if not getattr(settings, "CHANNEL_LAYERS", None):
        settings.CHANNEL_LAYERS = DEFAULT_CHANNEL_LAYERS
