
# --- the notifications app, embedded (docs/integrate.md) ---
import os  # noqa: E402

import notifications.embed  # noqa: E402

INSTALLED_APPS += [*notifications.embed.INSTALLED_APPS, "shop"]
AUTH_USER_MODEL = "shop.User"
ASGI_APPLICATION = "host.asgi.application"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
LOGIN_REDIRECT_URL = "/"
if os.environ.get("HOST_DATABASE_NAME"):
    # The suite on PostgreSQL: the host is too (a database of its own), so a UUID key meets the raw SQL there.
    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": os.environ["HOST_DATABASE_NAME"], "HOST": "127.0.0.1", "USER": "postgres"}}
else:
    # SQLite: take the write lock at BEGIN, so two writers queue instead of failing mid-transaction.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
