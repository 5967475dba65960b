"""The production shape: docker-compose.yml parses on a fresh checkout (no .env), its
commands are the ones the tests run, and the container entrypoint makes the secret
key and the first admin with no set-up. No container engine needed: `docker-compose
config` only parses, and the entrypoint runs here against SQLite."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ASGI_APP, ROOT, SERVER_MODULE

ENTRYPOINT = ROOT / "scripts" / "docker-entrypoint.sh"
DOCKER_COMPOSE = shutil.which("docker-compose")
# What `docker compose up` needs from the checkout; anything else (a developer's .env) stays out.
FRESH_CHECKOUT = ["docker-compose.yml", "Dockerfile", ".dockerignore", ".env.example", "deploy", "scripts"]
APP_SERVICES = ["migrate", "web", "prune", "worker"]

needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None and not os.environ.get("CI"),
    reason="docker-compose is not installed (scripts/test installs Debian's package; in CI this test always runs)",
)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the settings the compose file and the entrypoint read."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "NOTIFY_", "POSTGRES_", "COMPOSE_", "REDIS_", "DATABASE_"))}
    env.pop("HTTP_PORT", None)
    # `python` in the entrypoint is this interpreter, as it is the image's in a container.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes, from Compose v1's strings or v2's mappings."""
    result = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        result[target] = source
    return result


@pytest.fixture(scope="module")
def compose_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    assert DOCKER_COMPOSE, "docker-compose is missing: scripts/test installs it (Debian package docker-compose)"
    checkout = tmp_path_factory.mktemp("checkout")
    for name in FRESH_CHECKOUT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, checkout / name)
    assert not (checkout / ".env").exists()
    result = subprocess.run(
        [DOCKER_COMPOSE, "-f", "docker-compose.yml", "config"], cwd=checkout, env=clean_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    # Every variable has a default: nothing is silently blank on a fresh checkout.
    assert "is not set" not in result.stderr, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@needs_compose
def test_compose_runs_with_no_env_file_and_generates_the_secret(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert {"db", "redis", "migrate", "web", "proxy", "prune", "worker"} <= set(services)
    for name in APP_SERVICES:
        service = services[name]
        assert "env_file" not in service, name
        env = service["environment"]
        assert str(env["DJANGO_DEBUG"]) == "0", name
        assert env["DJANGO_SECRET_KEY"] == "", name
        # The generated key lives on a volume every app container shares.
        key_dir = str(Path(env["DJANGO_SECRET_KEY_FILE"]).parent)
        assert mounts(service).get(key_dir) == "secrets", name
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://"), name
    assert "secrets" in compose_config["volumes"]


@needs_compose
def test_compose_commands_are_the_ones_the_tests_run(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    web = services["web"]["command"]
    # The server and application tests/conftest.py's DaphneServer runs.
    assert web[:3] == ["python", "-m", SERVER_MODULE] and web[-1] == ASGI_APP
    assert web[web.index("-p") + 1] == "8000"
    # Every core of a web container serves (notifications/supervisor.py).
    assert services["web"]["environment"]["NOTIFY_WORKERS"] == "auto"
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert "python manage.py prune" in services["prune"]["command"][-1]
    # The image's default command is the web service's, so `docker run` serves the same thing.
    cmd = re.search(r"^CMD (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert cmd and json.loads(cmd.group(1)) == web
    assert services["worker"]["command"] == ["python", "manage.py", "worker"]
    for name in ("web", "prune", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


@needs_compose
def test_the_app_image_is_built_once_and_run_by_every_app_service(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    builders = [name for name, service in services.items() if "build" in service]
    # migrate: every other app service waits for it, so its image is there before they start (Compose v1 and v2).
    assert builders == ["migrate"]
    image = services["migrate"]["image"]
    assert image and all(services[name]["image"] == image for name in APP_SERVICES)


@needs_compose
def test_the_worker_gets_no_smtp_server_it_does_not_have(compose_config: dict[str, Any], tmp_path: Path) -> None:
    env = compose_config["services"]["worker"]["environment"]
    assert env["EMAIL_URL"] == ""  # unset: the console backend, said loudly in the worker's log (test_run_script)
    settings = run_entrypoint(
        sys.executable, "-c", "import django; from django.conf import settings; django.setup(); print(settings.EMAIL_BACKEND)",
        env=clean_env(EMAIL_URL="", DJANGO_DEBUG="0", DJANGO_SECRET_KEY="x" * 50, DATABASE_URL=f"sqlite:///{tmp_path / 'db'}",
                      DJANGO_SETTINGS_MODULE="project.settings"),
    )  # fmt: skip
    assert settings.stdout.strip() == "django.core.mail.backends.console.EmailBackend", settings.stderr


def test_the_proxy_does_not_serve_metrics() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    block = re.search(r"location \^~ /metrics \{([^}]*)\}", conf)
    assert block and block.group(1).split() == ["deny", "all;"]


@needs_compose
def test_web_replicas_sit_behind_the_proxy_with_no_sticky_sessions(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    # No host port on web: `--scale web=2` cannot collide, and daphne's --proxy-headers
    # only ever sees headers nginx set.
    assert "ports" not in services["web"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert [str(port["target"] if isinstance(port, dict) else port.split(":")[-1]) for port in proxy["ports"]] == ["8000"]
    conf_source = mounts(proxy)["/etc/nginx/nginx.conf"]
    assert Path(conf_source).name == "nginx.conf" and Path(conf_source).parent.name == "deploy"
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"^\s*server web:8000 resolve;", conf, re.MULTILINE)
    assert "proxy_pass http://web;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert not re.search(r"^\s*(ip_hash|hash|sticky)\b", conf, re.MULTILINE)


def test_the_image_runs_the_entrypoint() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"COPY scripts/{ENTRYPOINT.name} /usr/local/bin/{ENTRYPOINT.name}" in dockerfile
    assert f'ENTRYPOINT ["{ENTRYPOINT.name}"]' in dockerfile


def run_entrypoint(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ENTRYPOINT), *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


PRINT_SECRET_KEY = "import django; from django.conf import settings; django.setup(); print(settings.SECRET_KEY)"


def test_entrypoint_generates_the_secret_key_once_and_reuses_it(tmp_path: Path) -> None:
    key_file = tmp_path / "data" / "secret_key"
    key_file.parent.mkdir()
    env = clean_env(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY_FILE=str(key_file),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DJANGO_SETTINGS_MODULE="project.settings",
    )
    first = run_entrypoint(sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR", env=env)
    assert first.returncode == 0, first.stderr
    key = key_file.read_text().strip()
    assert len(key) >= 50
    assert key_file.stat().st_mode & 0o077 == 0, "the key file is readable by others"
    assert list(key_file.parent.iterdir()) == [key_file], "a temporary file was left behind"

    second = run_entrypoint(sys.executable, "-c", PRINT_SECRET_KEY, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == key
    assert key_file.read_text().strip() == key

    # A key given outright wins over the file, which is left as it is.
    given = run_entrypoint(sys.executable, "-c", PRINT_SECRET_KEY, env={**env, "DJANGO_SECRET_KEY": "given-outright"})
    assert given.stdout.strip() == "given-outright", given.stderr
    assert key_file.read_text().strip() == key


def env_example_secret() -> str:
    match = re.search(r"^#?\s*DJANGO_SECRET_KEY=(\S+)$", (ROOT / ".env.example").read_text(), re.MULTILINE)
    assert match, ".env.example no longer shows DJANGO_SECRET_KEY"
    return match.group(1)


@pytest.mark.parametrize("debug", ["0", "1"])
def test_the_env_example_placeholder_secret_is_refused(tmp_path: Path, debug: str) -> None:
    env = clean_env(
        DJANGO_DEBUG=debug,
        DJANGO_SECRET_KEY=env_example_secret(),
        DJANGO_SECRET_KEY_FILE=str(tmp_path / "secret_key"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    result = run_entrypoint(sys.executable, "manage.py", "check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is still the placeholder from .env.example" in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_no_secret_at_all_is_refused_with_debug_off(tmp_path: Path) -> None:
    env = clean_env(DJANGO_DEBUG="0", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    result = run_entrypoint(sys.executable, "manage.py", "check", env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE must be set when DJANGO_DEBUG is off" in result.stderr


def test_the_migrate_service_makes_the_first_admin_once(tmp_path: Path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    migrate = compose["services"]["migrate"]
    assert {"DJANGO_SUPERUSER_USERNAME", "DJANGO_SUPERUSER_PASSWORD", "DJANGO_SUPERUSER_EMAIL"} <= set(migrate["environment"])
    command = migrate["command"]  # run as written: `python` is this venv's, first on PATH
    db = tmp_path / "db.sqlite3"
    env = clean_env(
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY_FILE=str(tmp_path / "secret_key"),
        DATABASE_URL=f"sqlite:///{db}",
        DJANGO_SUPERUSER_USERNAME="root",
        DJANGO_SUPERUSER_PASSWORD="first-password",
        DJANGO_SUPERUSER_EMAIL="root@example.com",
    )
    first = run_entrypoint(*command, env=env)
    assert first.returncode == 0, first.stderr
    assert "Superuser 'root' created." in first.stdout
    # A second start (or a changed password variable) leaves the admin as it is.
    again = run_entrypoint(*command, env={**env, "DJANGO_SUPERUSER_PASSWORD": "second-password"})
    assert again.returncode == 0, again.stderr
    assert "Superuser 'root' exists" in again.stdout
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT username, email, is_superuser, is_staff FROM auth_user").fetchall()
    assert rows == [("root", "root@example.com", 1, 1)]
    check = (
        "import django; django.setup(); from django.contrib.auth import authenticate; "
        "print(authenticate(username='root', password='first-password'))"
    )
    login = run_entrypoint(sys.executable, "-c", check, env={**env, "DJANGO_SETTINGS_MODULE": "project.settings"})
    assert login.stdout.strip() == "root", login.stderr

    # Nobody is asked for an admin, and one exists: nothing more is made, nothing printed.
    quiet = run_entrypoint(*command, env=clean_env(**{k: v for k, v in env.items() if not k.startswith("DJANGO_SUPERUSER")}))
    assert quiet.returncode == 0 and "password" not in quiet.stdout, quiet.stderr

    no_password = run_entrypoint(*command, env={**env, "DJANGO_SUPERUSER_USERNAME": "other", "DJANGO_SUPERUSER_PASSWORD": ""})
    assert no_password.returncode != 0
    assert "without DJANGO_SUPERUSER_PASSWORD" in no_password.stderr


def test_a_bare_migrate_makes_an_admin_with_a_generated_password_shown_once(tmp_path: Path) -> None:
    command = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["migrate"]["command"]
    db = tmp_path / "db.sqlite3"
    env = clean_env(DJANGO_DEBUG="0", DJANGO_SECRET_KEY_FILE=str(tmp_path / "secret_key"), DATABASE_URL=f"sqlite:///{db}")
    first = run_entrypoint(*command, env=env)
    assert first.returncode == 0, first.stderr
    shown = re.search(r"No superuser existed: created 'admin' with the password\n\n    (\S+)\n", first.stdout)
    assert shown, first.stdout
    check = (
        "import django; django.setup(); from django.contrib.auth import authenticate; "
        f"u = authenticate(username='admin', password={shown.group(1)!r}); print(u, u.is_superuser)"
    )
    login = run_entrypoint(sys.executable, "-c", check, env={**env, "DJANGO_SETTINGS_MODULE": "project.settings"})
    assert login.stdout.strip() == "admin True", login.stderr
    again = run_entrypoint(*command, env=env)
    assert again.returncode == 0 and "password" not in again.stdout, again.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM auth_user").fetchone() == (1,)
