# Sourced by scripts/test and bench/run: make sure PostgreSQL and Redis answer on
# 127.0.0.1, starting (and on a bare Debian machine installing) them if not.
# Says plainly what is missing when it cannot.

PG_HOST=127.0.0.1
PG_PORT=5432

_as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}

_apt_install() {
    echo "==> installing $* with apt-get"
    _as_root apt-get update -q >/dev/null && _as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

ensure_postgres() {
    if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then return 0; fi
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        _apt_install postgresql || { echo "PostgreSQL is not running on $PG_HOST:$PG_PORT and could not be installed (need root or sudo)." >&2; return 1; }
        local conf; conf=$(ls -d /etc/postgresql/*/main | head -1)
        # Local trust auth on loopback, as on the CI machines.
        _as_root sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(local\s+all\s+all\s+)\S+/\1trust/' "$conf/pg_hba.conf"
    fi
    echo "==> starting PostgreSQL"
    local version; version=$(ls /etc/postgresql | head -1)
    _as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 60); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && break; sleep 0.5; done
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || { echo "PostgreSQL did not come up on $PG_HOST:$PG_PORT." >&2; return 1; }
    psql -h "$PG_HOST" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
        || psql -h "$PG_HOST" -U postgres -c "CREATE DATABASE test" >/dev/null
}

ensure_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then return 0; fi
    command -v redis-server >/dev/null || _apt_install redis-server redis-tools \
        || { echo "Redis is not running on 127.0.0.1:6379 and could not be installed (need root or sudo)." >&2; return 1; }
    echo "==> starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 40); do redis-cli ping 2>/dev/null | grep -q PONG && return 0; sleep 0.25; done
    echo "Redis did not come up on 127.0.0.1:6379." >&2
    return 1
}

ensure_chromium() {
    if [ -x /usr/bin/chromium ]; then return 0; fi
    _apt_install chromium || { echo "Chromium (Debian package 'chromium') is missing and could not be installed." >&2; return 1; }
}

ensure_docker_compose() {
    # Only to validate docker-compose.yml (tests/test_compose.py runs `docker-compose config`); no engine needed.
    if command -v docker-compose >/dev/null; then return 0; fi
    _apt_install docker-compose || { echo "docker-compose (Debian package 'docker-compose') is missing and could not be installed (need root or sudo)." >&2; return 1; }
}

ensure_venv() {
    # $1: requirements file. Reinstalls only when it changed.
    local req=$1
    command -v python3.11 >/dev/null || command -v python3 >/dev/null || { echo "Python 3.11 is required." >&2; return 1; }
    local py; py=$(command -v python3.11 || command -v python3)
    [ -x .venv/bin/python ] || { echo "==> creating .venv"; "$py" -m venv .venv; }
    local stamp=".venv/.installed-$(basename "$req")"
    local want; want=$(cat requirements*.txt | sha256sum | cut -d' ' -f1)
    # requirements-dev.txt includes the runtime: a venv set up for the tests serves scripts/run too.
    local dev=".venv/.installed-requirements-dev.txt"
    if [ -f "$dev" ] && [ "$(cat "$dev")" = "$want" ]; then return 0; fi
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "==> installing $req into .venv"
        .venv/bin/python -m pip install -q --upgrade pip >/dev/null
        .venv/bin/python -m pip install -q -r "$req"
        echo "$want" >"$stamp"
    fi
}
