
# --- the notifications app, embedded (docs/integrate.md) ---
import notifications.embed  # noqa: E402

INSTALLED_APPS += [*notifications.embed.INSTALLED_APPS, "shop"]
AUTH_USER_MODEL = "shop.User"
ASGI_APPLICATION = "host.asgi.application"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
LOGIN_REDIRECT_URL = "/"
# SQLite: take the write lock at BEGIN, so two writers queue instead of failing mid-transaction.
DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
