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
- SIGHUP to the parent: a restart without a storm (a deploy). One slot at a
  time, a new child starts on the same socket and, once it listens, the old one
  is sent SIGTERM and drains its sockets with 1012 while the new one takes them
  back; the next slot waits until the old child has exited. The port never
  stops accepting, and only one child's clients reconnect at a time.
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
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SERVER_MODULE = "notifications.server"
BOOT_SECONDS = 5.0  # a child that fails this soon after its start could not start
READY_FD = "NOTIFY_READY_FD"  # a child writes a byte to this fd once it listens (server.py)
READY_SECONDS = 60.0  # a restart gives a new child this long to listen before it keeps the old one
RETIRE_SECONDS = 30.0  # ...and an old child this long to drain and exit before it kills it


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
    retiring: set[int] = field(default_factory=set)  # old children a restart has stopped: not started again
    ready: dict[int, int] = field(default_factory=dict)  # pid -> the read end of its READY_FD pipe
    lock: threading.Lock = field(default_factory=threading.Lock)  # the restart's thread and the main loop share the above
    restarting: threading.Thread | None = None

    def run(self) -> int:
        try:
            self.listener = socket.create_server((self.plan.host, self.plan.port), backlog=self.backlog)
        except (OSError, socket.gaierror) as e:
            raise SystemExit(f"cannot listen on {self.plan.host}:{self.plan.port}: {e}") from e
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.restart())
        log.info("%d workers on %s:%d (parent %d)", self.plan.workers, self.plan.host, self.plan.port, os.getpid())
        for slot in range(self.plan.workers):
            self.start(slot)
        while self.children:
            pid, status = os.wait()  # a signal runs its handler and the wait goes on (PEP 475)
            if pid in self.children:
                self.exited(pid, os.waitstatus_to_exitcode(status))
        return self.exit_code

    def start(self, slot: int) -> int:
        fd = self.listener.fileno()
        ready_read, ready_write = os.pipe()
        command = [sys.executable, "-m", SERVER_MODULE, *self.plan.daphne_args, "--fd", str(fd)]
        env = {**os.environ, "NOTIFY_WORKERS": "1", READY_FD: str(ready_write)}
        with self.lock:
            child = subprocess.Popen(command, pass_fds=(fd, ready_write), env=env)
            os.close(ready_write)
            self.children[child.pid] = (slot, time.monotonic())
            self.ready[child.pid] = ready_read
        if self.stopping:  # the signal came while it was being started
            os.kill(child.pid, signal.SIGTERM)
        return child.pid

    def restart(self) -> None:
        if self.stopping or (self.restarting is not None and self.restarting.is_alive()):
            return
        self.restarting = threading.Thread(target=self._restart_each_slot, name="restart", daemon=True)
        self.restarting.start()

    def _restart_each_slot(self) -> None:
        with self.lock:
            old = sorted(self.children.items(), key=lambda item: item[1][0])
        log.info("restarting %d workers, one at a time", len(old))
        for pid, (slot, _) in old:
            if self.stopping:
                return
            new = self.start(slot)
            if not self._wait_ready(new):
                log.error("the new worker %d (pid %d) did not listen within %.0fs: keeping the old one", slot, new, READY_SECONDS)
                continue
            with self.lock:
                self.retiring.add(pid)
            try:
                os.kill(pid, signal.SIGTERM)  # it stops accepting and drains; the new one takes its clients
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + RETIRE_SECONDS
            while pid in self.children and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid in self.children:
                os.kill(pid, signal.SIGKILL)
        log.info("restart done")

    def _wait_ready(self, pid: int) -> bool:
        fd = self.ready.get(pid)
        if fd is None:
            return False
        readable, _, _ = select.select([fd], [], [], READY_SECONDS)
        return bool(readable) and os.read(fd, 1) == b"1"

    def exited(self, pid: int, code: int) -> None:
        with self.lock:
            slot, started = self.children.pop(pid)
            retired = pid in self.retiring
            self.retiring.discard(pid)
            fd = self.ready.pop(pid, None)
        if fd is not None:
            os.close(fd)
        if retired:
            log.info("worker %d (pid %d), replaced, exited with %d", slot, pid, code)
        elif self.stopping:
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
