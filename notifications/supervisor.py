"""Several server processes on one port: `python -m notifications.server --workers N` (or NOTIFY_WORKERS).

The parent binds the port once and hands the listening socket to N children,
each a whole server (server.py, through daphne's --fd) with its own hub,
admission and membership of the nodes group in Redis. They all accept from that
one socket, so there is one accept queue: a connection waits in it for whichever
child takes it first, and a child that pauses accepting while its admission is
full (docs/decisions/0012) leaves the queue to the others. (With SO_REUSEPORT
each child would have a queue of its own, picked by a hash of the client's
address: what waits in the queue of a child that is full, draining or dead
waits there, or is reset.)

- SIGTERM (or SIGINT) to the parent: it closes its copy of the socket and sends
  SIGTERM to every child; each drains as a single server does, and the parent
  exits once all have exited: 0 if every child did.
- A child that dies while the parent is not stopping is started again, and the
  others are not touched. One that exits with an error within BOOT_SECONDS of
  its start could not start (a bad setting, no database): the parent stops the
  others and exits with that code, rather than start it again forever.

The parent imports neither Django nor Twisted: it only binds, starts and waits.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SERVER_MODULE = "notifications.server"
BOOT_SECONDS = 5.0  # a child that fails this soon after its start could not start


@dataclass(frozen=True)
class Plan:
    """How many server processes, where, and daphne's other arguments for each."""

    workers: int
    host: str
    port: int
    daphne_args: list[str]


def workers_option(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[int, list[str]]:
    """--workers N (default NOTIFY_WORKERS, else 1; "auto" is the number of cores) and the rest of argv, daphne's."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--workers", default=environ.get("NOTIFY_WORKERS") or "1")
    options, rest = parser.parse_known_args(argv)
    value = options.workers.strip().lower()
    workers = (os.cpu_count() or 1) if value == "auto" else int(value) if value.isdigit() else 0
    if workers < 1:
        raise SystemExit(f"--workers / NOTIFY_WORKERS: a number of processes (1 or more) or auto, not {options.workers!r}")
    return workers, rest


def plan(workers: int, argv: Sequence[str], environ: Mapping[str, str]) -> Plan:
    """The plan for more than one worker: a TCP host and port, which the parent binds."""
    if not environ.get("REDIS_URL"):
        # Without Redis the channel layer is in-process: a push would reach the sockets of one worker only.
        raise SystemExit("--workers above 1 needs REDIS_URL: the workers reach each other's sockets through Redis")
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    for other in ("-u", "--unix-socket", "--fd", "-e", "--endpoint"):
        parser.add_argument(other, dest="other_endpoint")
    options, rest = parser.parse_known_args(argv)
    if options.other_endpoint is not None:
        raise SystemExit("--workers above 1 serves a TCP port (-b, -p): not with -u, --fd or -e")
    return Plan(workers=workers, host=options.bind, port=options.port, daphne_args=rest)


@dataclass
class Supervisor:
    plan: Plan
    backlog: int
    listener: socket.socket = field(init=False)
    children: dict[int, tuple[int, float]] = field(default_factory=dict)  # pid -> (slot, started at)
    stopping: bool = False
    exit_code: int = 0

    def run(self) -> int:
        try:
            self.listener = socket.create_server((self.plan.host, self.plan.port), backlog=self.backlog)
        except (OSError, socket.gaierror) as e:
            raise SystemExit(f"cannot listen on {self.plan.host}:{self.plan.port}: {e}") from e
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        log.info("%d workers on %s:%d (parent %d)", self.plan.workers, self.plan.host, self.plan.port, os.getpid())
        for slot in range(self.plan.workers):
            self.start(slot)
        while self.children:
            pid, status = os.wait()  # a signal runs its handler and the wait goes on (PEP 475)
            if pid in self.children:
                self.exited(pid, os.waitstatus_to_exitcode(status))
        return self.exit_code

    def start(self, slot: int) -> None:
        fd = self.listener.fileno()
        command = [sys.executable, "-m", SERVER_MODULE, *self.plan.daphne_args, "--fd", str(fd)]
        child = subprocess.Popen(command, pass_fds=(fd,), env={**os.environ, "NOTIFY_WORKERS": "1"})
        self.children[child.pid] = (slot, time.monotonic())
        if self.stopping:  # the signal came while it was being started
            os.kill(child.pid, signal.SIGTERM)

    def exited(self, pid: int, code: int) -> None:
        slot, started = self.children.pop(pid)
        if self.stopping:
            self.exit_code = self.exit_code or (code if code >= 0 else 128 - code)  # killed by a signal: as a shell says
        elif code > 0 and time.monotonic() - started < BOOT_SECONDS:
            log.error("worker %d (pid %d) exited with %d as it started: stopping", slot, pid, code)
            self.exit_code = code
            self.stop()
        else:
            log.warning("worker %d (pid %d) exited with %d: starting another", slot, pid, code)
            self.start(slot)

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.listener.close()  # once the children have stopped listening too, a connection is refused
        for pid in self.children:
            os.kill(pid, signal.SIGTERM)


def run(*, workers: int, argv: Sequence[str], backlog: int) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Supervisor(plan(workers, argv, os.environ), backlog).run()
