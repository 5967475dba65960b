"""The app embedded in a team's own project, as docs/integrate.md tells a team to do it.

A throwaway host is made at test time (`django-admin startproject`), with its own
user model (email login, UUID key), in a virtual environment of its own that has
the wheel of this repo installed (its dependencies come from the shared one).
Real daphne serves it; real Chromium shows its page.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

from .conftest import ROOT, free_port

FILES = Path(__file__).resolve().parent / "embedded_host"
EMAIL, PASSWORD = "alice@example.com", "correct horse battery"

# One xdist worker takes every test here: the host (wheel, venv, migrate) is a session fixture, built once per worker.
pytestmark = [pytest.mark.server, pytest.mark.xdist_group("embedded_host")]


@dataclass
class Host:
    dir: Path
    python: Path
    database: str  # a PostgreSQL database of its own when the suite runs on PostgreSQL, else "" (SQLite)

    def env(self, settings: str = "host.settings") -> dict[str, str]:
        # Nothing of this repo's own environment: not its settings, not its source on the path.
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DJANGO_SETTINGS_MODULE": settings}
        return env | ({"HOST_DATABASE_NAME": self.database} if self.database else {})

    def manage(self, *args: str, settings: str = "host.settings", check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.python), "manage.py", *args], cwd=self.dir, env=self.env(settings), capture_output=True, text=True, timeout=180
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done


def run(*cmd: str | Path, cwd: Path | None = None) -> None:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="session")
def host_database() -> Iterator[str]:
    """On PostgreSQL (as in CI), a database for the host alone, dropped at the end; else "" and the host uses SQLite."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        yield ""
        return
    import psycopg

    name = f"embedded_host_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield name
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def host(tmp_path_factory: pytest.TempPathFactory, host_database: str) -> Host:
    """Wheel, venv, startproject, the team's files, migrate: once per session (it costs seconds)."""
    base = tmp_path_factory.mktemp("embedded")
    # The wheel, as `pip wheel .` builds it; built from a copy, so the work tree gets no build/ left behind.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "test-artifacts", "bench", "*.sqlite3", "__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", base / "dist", source)
    (wheel,) = (base / "dist").glob("*.whl")
    # A venv of the host's own; the shared venv's packages stand in for the dependencies pip would fetch.
    venv = base / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    Path(site, "shared-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel)

    project = base / "host"
    project.mkdir()
    run(python, "-m", "django", "startproject", "host", project)
    shutil.copytree(FILES / "shop", project / "shop")
    for name in ("asgi.py", "urls.py", "urls_without_notifications.py", "settings_incomplete.py"):
        shutil.copy(FILES / name, project / "host" / name)
    with (project / "host" / "settings.py").open("a") as settings:
        settings.write((FILES / "settings_tail.py").read_text())
    made = Host(project, python, host_database)
    made.manage("makemigrations", "shop")
    made.manage("migrate", "--noinput")
    made.manage("shell", "-c", f"from shop.models import User; User.objects.create_user({EMAIL!r}, {PASSWORD!r})")
    return made


@pytest.fixture(scope="session")
def server(host: Host) -> Iterator[str]:
    port = free_port()
    log = (host.dir / "daphne.log").open("wb")
    proc = subprocess.Popen(
        [str(host.python), "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "host.asgi:application"],
        cwd=host.dir, env=host.env(), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, (host.dir / "daphne.log").read_text()
        try:
            urllib.request.urlopen(f"{url}/notifications/healthz", timeout=2)
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.monotonic() < deadline, "the host's daphne never answered"
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def post_order(server: str, item: str, *, out_of_stock: bool = False) -> tuple[int, dict]:
    form = {"email": EMAIL, "item": item, **({"out_of_stock": "1"} if out_of_stock else {})}
    request = urllib.request.Request(f"{server}/orders/", data=urllib.parse.urlencode(form).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_wheel_is_the_app_without_the_service(host: Host) -> None:
    done = subprocess.run(
        [str(host.python), "-c", "import importlib.util as u, notifications; print(notifications.__file__, u.find_spec('project'))"],
        cwd=host.dir.parent, env=host.env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    where, project = done.stdout.split()
    assert "site-packages" in where and str(ROOT) not in where
    assert project == "None"


def test_a_missing_piece_fails_the_start_naming_it(host: Host) -> None:
    done = host.manage("check", settings="host.settings_incomplete", check=False)
    assert done.returncode != 0
    assert "notifications.E001" in done.stderr and "'ninja'" in done.stderr
    assert "notifications.E003" in done.stderr and 'include("notifications.urls")' in done.stderr


def test_issue_token_takes_the_hosts_login_field(host: Host) -> None:
    assert host.manage("issue_token", EMAIL, "--scopes", "read").stdout.strip().startswith("ntf_")
    done = host.manage("issue_token", "nobody@example.com", check=False)
    assert done.returncode != 0 and "no user 'nobody@example.com'" in done.stderr


async def test_notify_commits_with_the_change_and_reaches_the_socket(host: Host, server: str) -> None:
    token = host.manage("issue_token", EMAIL, "--scopes", "read").stdout.strip()
    ws_url = server.replace("http", "ws") + "/ws/notifications/"
    async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as socket:
        welcome = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert welcome["type"] == "welcome"
        head = welcome["head_seq"]

        status, body = await asyncio.to_thread(post_order, server, "teapot", out_of_stock=True)
        assert (status, body) == (409, {"placed": False})
        status, body = await asyncio.to_thread(post_order, server, "kettle")
        assert status == 200 and body["placed"] and body["seq"] == head + 1

        # The rolled-back order left no notification: the first frame is the committed one, with the next seq.
        frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert frame["type"] == "notification" and frame["seq"] == head + 1
        assert frame["title"] == "Order placed: kettle" and frame["kind"] == "shop.order"

    titles = host.manage("shell", "-c", "from notifications.models import Notification as N; print(list(N.objects.values_list('title')))")
    assert "teapot" not in titles.stdout and "kettle" in titles.stdout
    orders = host.manage("shell", "-c", "from shop.models import Order; print(list(Order.objects.values_list('item', flat=True)))")
    assert "teapot" not in orders.stdout and "kettle" in orders.stdout


@pytest.mark.browser
def test_the_bell_on_the_hosts_page_updates_live(host: Host, server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{server}/accounts/login/?next=/")
            page.fill("input[name=username]", EMAIL)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            bell = page.locator("[data-notifications-bell]")
            expect(bell).to_have_attribute("data-state", "live", timeout=15000)
            before = int(bell.get_attribute("data-unread") or "0")
            # No race with the socket: the bell resumes from the head of the page it read, so an order
            # placed before its socket is up still arrives.
            status, _ = post_order(server, "lamp")
            assert status == 200
            expect(bell).to_have_attribute("data-unread", str(before + 1), timeout=15000)
            expect(bell.locator("[data-count]")).to_have_text(str(before + 1))
            bell.locator("button").click()
            expect(bell.locator("[data-list] li").first).to_contain_text("Order placed: lamp")
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "embedded-bell.png"))
        finally:
            browser.close()


def test_the_wheel_declares_every_package_the_app_imports() -> None:
    # The host venv above gets the dependencies from the shared venv (no network), so it cannot
    # notice one missing from pyproject.toml: a host's `pip install` would, with an ImportError.
    import ast
    import importlib.metadata
    import re
    import tomllib

    declared = {
        re.split(r"[\[<>=!~ ;]", dep, maxsplit=1)[0].lower().replace("_", "-")
        for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    providers = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    for path in (ROOT / "notifications").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.partition(".")[0])
    undeclared = {
        name
        for name in imported - {"notifications"}
        if providers.get(name) and not {dist.lower().replace("_", "-") for dist in providers[name]} & declared
    }
    assert undeclared == set(), "imported by notifications/ but no distribution of it is in pyproject.toml's dependencies"
