#!/bin/sh
# The container's entrypoint: no set-up before the first `docker compose up`.
# - Without DJANGO_SECRET_KEY, a random key is written once to
#   DJANGO_SECRET_KEY_FILE (a named volume), and every container reads that one.
# - `python manage.py migrate ...` (the one-off migrate service) is followed by
#   the first admin from DJANGO_SUPERUSER_USERNAME/_PASSWORD/_EMAIL when they
#   are set; an existing user is left as it is. When they are not set and no
#   superuser exists, an `admin` with a generated password, printed once.
# Then it runs the command it was given.
set -eu

ensure_secret_key() {
    [ -z "${DJANGO_SECRET_KEY:-}" ] && [ -n "${DJANGO_SECRET_KEY_FILE:-}" ] || return 0
    [ -s "$DJANGO_SECRET_KEY_FILE" ] && return 0
    tmp=$(mktemp "$DJANGO_SECRET_KEY_FILE.XXXXXX")
    python -c 'import secrets; print(secrets.token_urlsafe(50))' >"$tmp"
    # ln does not replace an existing file: if another container won the race,
    # its key stays and every container shares it.
    ln "$tmp" "$DJANGO_SECRET_KEY_FILE" 2>/dev/null || true
    rm -f "$tmp"
}

ensure_superuser() {
    [ -n "${DJANGO_SUPERUSER_USERNAME:-}" ] || { ensure_some_superuser; return; }
    if [ -z "${DJANGO_SUPERUSER_PASSWORD:-}" ]; then
        echo "DJANGO_SUPERUSER_USERNAME is set without DJANGO_SUPERUSER_PASSWORD: no admin created." >&2
        return 1
    fi
    # createsuperuser --noinput fails on a user that exists, so look first.
    python - <<'EOF'
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()

from django.contrib.auth import get_user_model

User = get_user_model()
username = os.environ["DJANGO_SUPERUSER_USERNAME"]
if User._default_manager.filter(**{User.USERNAME_FIELD: username}).exists():
    print(f"Superuser {username!r} exists: left as it is.")
else:
    User._default_manager.create_superuser(
        username, os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), os.environ["DJANGO_SUPERUSER_PASSWORD"]
    )
    print(f"Superuser {username!r} created.")
EOF
}

# Nobody could log in to a fresh install: make an admin, and show its password this once.
ensure_some_superuser() {
    python - <<'EOF'
import os
import secrets

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup()

from django.contrib.auth import get_user_model

User = get_user_model()
users = User._default_manager
if not users.filter(is_superuser=True).exists():
    username = "admin"
    if users.filter(**{User.USERNAME_FIELD: username}).exists():  # an ordinary user took the name
        username = f"admin-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    users.create_superuser(username, "", password)
    bar = "=" * 72
    print(f"{bar}\nNo superuser existed: created {username!r} with the password\n\n    {password}\n\n"
          f"It is shown this once. Log in at /admin/ and change it.\n{bar}", flush=True)
EOF
}

ensure_secret_key

if [ "$#" -ge 3 ] && [ "$2" = manage.py ] && [ "$3" = migrate ]; then
    "$@"
    ensure_superuser
    exit 0
fi
exec "$@"
