"""Settings: every knob comes from an environment variable (see README, "Configuration").

With nothing set the service runs on the embedded default: SQLite and an
in-process channel layer, one process. Set DATABASE_URL and REDIS_URL for the
production shape (PostgreSQL + Redis, many daphne processes).
"""

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

import notifications.embed

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


# django-ratelimit's rate syntax: a count per period, the period an optional number and s, m, h or d ("600/m", "100/5m").
_RATE = re.compile(r"\d+/\d*[smhd]")


def env_rate(name: str, default: str) -> str | None:
    """A rate limit such as "600/m"; "off" turns it off (None)."""
    value = os.environ.get(name, "").strip() or default
    if value.lower() == "off":
        return None
    if not _RATE.fullmatch(value):
        raise ImproperlyConfigured(f"{name} must be a count per period such as 600/m or 100/5m, or off: got {value!r}.")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Without DATABASE_URL we are on the embedded default, a developer's machine:
# DEBUG is on unless said otherwise. The production shape sets it explicitly.
DEBUG = env_bool("DJANGO_DEBUG", default="DATABASE_URL" not in os.environ)

# DJANGO_SECRET_KEY, else the file DJANGO_SECRET_KEY_FILE names (the container
# entrypoint writes a random key there on first start).
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
_SECRET_KEY_FILE = os.environ.get("DJANGO_SECRET_KEY_FILE", "")
if not SECRET_KEY and _SECRET_KEY_FILE:
    try:
        SECRET_KEY = Path(_SECRET_KEY_FILE).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"DJANGO_SECRET_KEY_FILE {_SECRET_KEY_FILE} cannot be read: {exc.strerror}.") from exc
if SECRET_KEY.startswith("change-me"):
    # .env.example's placeholder is public: as good as no key.
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is still the placeholder from .env.example: set a long random value, "
        "or leave it unset under docker compose to have one generated and kept in a volume."
    )
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "insecure-dev-only-key-never-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
if not DEBUG and "*" in ALLOWED_HOSTS:
    # The WebSocket origin check is built from ALLOWED_HOSTS: '*' would turn it off.
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS='*' is refused when DJANGO_DEBUG is off.")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",  # the API and the socket for an app's pages on NOTIFY_ALLOWED_ORIGINS
    # The service is one host of the app, spliced in as any host does (docs/integrate.md).
    *notifications.embed.INSTALLED_APPS,
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",  # before anything that answers: a preflight gets its headers
    "notifications.middleware.DatabaseUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(_DATABASE_URL)}
_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 20)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and _POOL_SIZE > 0:
    # Under ASGI every request runs in a thread of its own, so a persistent
    # connection (CONN_MAX_AGE) is one per request thread, never reused, and
    # PostgreSQL runs out of slots (Django's docs: use a pool under ASGI).
    # Connections go back to this per-process pool when a request ends.
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": 2,
            "max_size": _POOL_SIZE,
            "timeout": env_int("DATABASE_POOL_TIMEOUT", 10),
            # The pool retries a lost connection with a doubling delay; give up soon, so the
            # next request after an outage starts a fresh attempt (docs/decisions/0007).
            "reconnect_timeout": 2,
        },
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Fails fast while the database is down (notifications/availability.py): a refused or
    # unreachable server answers within connect_timeout, not the pool timeout.
    DATABASES["default"]["ENGINE"] = "notifications.database"
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 2)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so reading a user's sequence and
    # advancing it cannot interleave with another writer.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # A receive blocks in Redis for 5 s (channels-redis' BZPOPMIN); redis-py 8
                # times reads out after 5 s by default, so an idle hub's receive failed
                # every few seconds (docs/decisions/0007). Read timeouts sit well above the
                # block; a peer that vanished is still found (this, and TCP keepalive,
                # on by default). A ?socket_timeout= in REDIS_URL wins.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                # Each process receives every push on one channel and fans it
                # out in process, so that channel carries the whole publish
                # rate: give it room. A drop still loses nothing (heartbeat
                # head_seq and resume cover it) but costs every client a replay.
                "capacity": env_int("CHANNEL_CAPACITY", 5000),
                "expiry": 60,
                # Every server process re-joins the nodes group each minute
                # (hub.GROUP_REFRESH_SECONDS); one that died is dropped from it
                # after this, instead of a day of every push copied to its channel.
                "group_expiry": 300,
                "prefix": os.environ.get("CHANNEL_PREFIX", "asgi"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 5000}}}

# The cache holds the HTTP rate-limit counters (notifications/rate_limits.py): in Redis they are
# shared by every process; in local memory they are the embedded default's one process's own.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Apart from the channel layer's keys (CHANNEL_PREFIX) on the same Redis.
            "KEY_PREFIX": os.environ.get("CACHE_PREFIX", "cache"),
            # A limit is not worth a request: a Redis that does not answer soon lets it through.
            "OPTIONS": {
                "socket_connect_timeout": 1,
                "socket_timeout": 1,
                # One pool for the process, not one per request thread (notifications/shared_redis_pool.py).
                "pool_class": "notifications.shared_redis_pool.SharedConnectionPool",
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# django-ratelimit (not in INSTALLED_APPS: its system check calls the embedded default's local
# memory an error, though that is one process, and warns on Django's own RedisCache, whose INCR
# is atomic; docs/decisions/0013). A cache that fails lets the request through.
RATELIMIT_USE_CACHE = "default"
RATELIMIT_FAIL_OPEN = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "inbox"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# The service's own knobs, read once by notifications.conf.
NOTIFICATIONS = {
    "HEARTBEAT_SECONDS": env_int("NOTIFY_HEARTBEAT_SECONDS", 25),
    "REPLAY_PAGE_SIZE": env_int("NOTIFY_REPLAY_PAGE_SIZE", 1000),
    "RETENTION_DAYS": env_int("NOTIFY_RETENTION_DAYS", 90),
    "CLIENT_EVENT_DAYS": env_int("NOTIFY_CLIENT_EVENT_DAYS", 30),
    "MAX_FRAME_BYTES": env_int("NOTIFY_MAX_FRAME_BYTES", 64 * 1024),
    "CLIENT_FRAMES_PER_SECOND": env_int("NOTIFY_CLIENT_FRAMES_PER_SECOND", 20),
    "CLIENT_FRAME_BURST": env_int("NOTIFY_CLIENT_FRAME_BURST", 60),
    "SEND_BUFFER_FRAMES": env_int("NOTIFY_SEND_BUFFER_FRAMES", 2000),
    # Unsent bytes a socket's transport may hold (notifications/server.py): above
    # the largest replay page (NOTIFY_REPLAY_PAGE_SIZE x the largest notifications).
    "SEND_BUFFER_BYTES": env_int("NOTIFY_SEND_BUFFER_BYTES", 8 * 1024 * 1024),
    "DRAIN_SECONDS": env_int("NOTIFY_DRAIN_SECONDS", 3),
    "MAX_CONNECTING": env_int("NOTIFY_MAX_CONNECTING", 64),
    "TICKET_SECONDS": env_int("NOTIFY_TICKET_SECONDS", 60),
    # Beside an app (docs/integrate.md): its backend signs short-lived JWTs with this
    # secret, and its pages on these origins open sockets and call the API with them.
    "CONNECTION_SECRET": os.environ.get("NOTIFY_CONNECTION_SECRET", ""),
    "ALLOWED_ORIGINS": env_list("NOTIFY_ALLOWED_ORIGINS", ""),
    # HTTP abuse limits (docs/api.md, "Rate limits"): far above what a dashboard or a publishing backend does.
    "RATE_PUBLISH": env_rate("NOTIFY_RATE_PUBLISH", "600/m"),  # per token (or staff session)
    "RATE_TICKETS": env_rate("NOTIFY_RATE_TICKETS", "60/m"),  # per user
    "RATE_ME": env_rate("NOTIFY_RATE_ME", "600/m"),  # per user: /me/*, /topics
    "RATE_API_ADDRESS": env_rate("NOTIFY_RATE_API_ADDRESS", "3000/m"),  # per client address, any /api/v1/ request
    "RATE_LOGIN_ADDRESS": env_rate("NOTIFY_RATE_LOGIN_ADDRESS", "10/m"),  # login attempts per client address
    "RATE_LOGIN_USERNAME": env_rate("NOTIFY_RATE_LOGIN_USERNAME", "10/m"),  # login attempts per username
    # How many proxies in front set X-Forwarded-For (docker-compose's nginx: 1). 0: the client is REMOTE_ADDR.
    "TRUSTED_PROXIES": env_int("NOTIFY_TRUSTED_PROXIES", 0),
}
if NOTIFICATIONS["CONNECTION_SECRET"] and len(str(NOTIFICATIONS["CONNECTION_SECRET"])) < 32:
    raise ImproperlyConfigured("NOTIFY_CONNECTION_SECRET must be at least 32 characters (RFC 7518 wants 256 bits for HS256).")
# CORS (django-cors-headers) for the API only, for the app's origins only; no cookies cross-origin:
# a page elsewhere sends the app's connection token as a Bearer header.
CORS_ALLOWED_ORIGINS = NOTIFICATIONS["ALLOWED_ORIGINS"]
CORS_URLS_REGEX = r"^/api/v1/"
CORS_ALLOW_CREDENTIALS = False


# Away channels: email digests and Web Push (docs/channels.md), run by `manage.py worker`.
def email_settings(url: str) -> dict[str, Any]:
    """EMAIL_URL as Django's EMAIL_* settings: smtp://user:pass@host:587 (STARTTLS with smtp+tls://, TLS with smtps://).

    Unset: the console backend, digests printed to the worker's log (it says so when it starts).
    Not SMTP to localhost:25, which in a container is the container itself: nothing listens, every digest fails.
    """
    if not url:
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    parts = urlsplit(url)
    if parts.scheme not in {"smtp", "smtp+tls", "smtps", "smtp+ssl"}:
        raise ImproperlyConfigured("EMAIL_URL must be smtp://, smtp+tls:// or smtps://")
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname or "localhost",
        "EMAIL_PORT": parts.port or (465 if parts.scheme in {"smtps", "smtp+ssl"} else 25),
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": parts.scheme == "smtp+tls",
        "EMAIL_USE_SSL": parts.scheme in {"smtps", "smtp+ssl"},
        "EMAIL_TIMEOUT": 20,
    }


globals().update(email_settings(os.environ.get("EMAIL_URL", "")))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "notifications@localhost")
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["away", "webhooks"]}}
AWAY = {
    "PUBLIC_URL": os.environ.get("NOTIFY_PUBLIC_URL", "http://localhost:8000").rstrip("/"),
    "EMAIL_DELAY_SECONDS": env_int("NOTIFY_EMAIL_DELAY_SECONDS", 600),
    "EMAIL_DIGEST_SECONDS": env_int("NOTIFY_EMAIL_DIGEST_SECONDS", 300),
    "PUSH_DELAY_SECONDS": env_int("NOTIFY_PUSH_DELAY_SECONDS", 30),
    "PUSH_TTL_SECONDS": env_int("NOTIFY_PUSH_TTL_SECONDS", 24 * 3600),
    "VAPID_PUBLIC_KEY": os.environ.get("NOTIFY_VAPID_PUBLIC_KEY", ""),
    "VAPID_PRIVATE_KEY": os.environ.get("NOTIFY_VAPID_PRIVATE_KEY", ""),
    "VAPID_SUBJECT": os.environ.get("NOTIFY_VAPID_SUBJECT", "mailto:admin@localhost"),
    # A subscription names the URL the server will POST to: only the browsers' push services.
    "PUSH_ENDPOINT_HOSTS": env_list(
        "NOTIFY_PUSH_ENDPOINT_HOSTS",
        "fcm.googleapis.com,updates.push.services.mozilla.com,web.push.apple.com,*.notify.windows.com",
    ),
    # The oldest of a user's subscriptions gives way to a new one past this many.
    "PUSH_MAX_SUBSCRIPTIONS": env_int("NOTIFY_PUSH_MAX_SUBSCRIPTIONS", 10),
    "PUSH_TIMEOUT_SECONDS": float(os.environ.get("NOTIFY_PUSH_TIMEOUT_SECONDS", "10")),
    # Users served at once in a push round, and requests at once for one user's subscriptions.
    "PUSH_CONCURRENCY": env_int("NOTIFY_PUSH_CONCURRENCY", 8),
    "WORKER_POLL_SECONDS": float(os.environ.get("NOTIFY_WORKER_POLL_SECONDS", "2")),
    # A round still RUNNING this long is taken as lost wherever its worker was (notifications/tasks.py).
    "WORKER_LOST_SECONDS": env_int("NOTIFY_WORKER_LOST_SECONDS", 900),
}
WEBHOOKS = {
    # Lets endpoints on loopback and private addresses, and plain http, in: development and tests only.
    "ALLOW_PRIVATE": env_bool("NOTIFY_WEBHOOK_ALLOW_PRIVATE", False),
    # The waits before each retry, in seconds ("5,300,1800"); a message that fails after the last is given up.
    # Unset: notifications.conf's schedule, about 28 hours (docs/webhooks.md).
    "RETRY_SECONDS": [float(s) for s in env_list("NOTIFY_WEBHOOK_RETRY_SECONDS", "")],
    "TIMEOUT_SECONDS": float(os.environ.get("NOTIFY_WEBHOOK_TIMEOUT_SECONDS", "10")),
    # Requests at once per worker process.
    "CONCURRENCY": env_int("NOTIFY_WEBHOOK_CONCURRENCY", 8),
    # A PEM bundle to trust instead of certifi's (a private CA); the tests' receiver is trusted this way.
    "CA_FILE": os.environ.get("NOTIFY_WEBHOOK_CA_FILE", ""),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}
