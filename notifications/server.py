"""The server: daphne, extended where a notification service needs more than its defaults.

    python -m notifications.server -b 0.0.0.0 -p 8000 [--workers N] project.asgi:application

takes daphne's own arguments, and --workers (NOTIFY_WORKERS): that many server
processes sharing the port (supervisor.py). What it adds, each where only the server can do it:

- **Bounded send buffers.** An ASGI app cannot see what a socket's transport
  still holds. A client that stops reading (or acks what it never read) would
  make daphne queue every push for it. Past NOTIFY_SEND_BUFFER_BYTES unsent for
  SLOW_CHECK_SECONDS, the queued frames not yet begun are dropped, a 4408 close frame goes after the one
  in flight, and the connection is aborted if the client has not read it within
  SLOW_CLOSE_GRACE_SECONDS. Nothing is lost: the client resumes from its cursor.
- **Frame size.** Client frames over NOTIFY_MAX_FRAME_BYTES are refused by
  autobahn while they arrive, before they are assembled, with close code 1009,
  which daphne does not let an application send.
- **Drain on SIGTERM.** Stop accepting, close every socket with 1012 spread over
  NOTIFY_DRAIN_SECONDS (so clients do not all come back in the same instant),
  let each hub write its pending acks and leave its group, then exit, within
  EXIT_DEADLINE_SECONDS in any case.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer
from twisted.internet import reactor as twisted_reactor

from . import conf, lifecycle, protocol, supervisor
from .admission import admission

log = logging.getLogger(__name__)
reactor: Any = twisted_reactor  # the installed (asyncio) reactor; Twisted's stubs type it as an interface

SLOW_CLOSE_GRACE_SECONDS = 10.0  # a stalled client's close frame waits this long to be read
SLOW_CHECK_SECONDS = 1.0  # unsent bytes over the bound must still be there this much later
HARD_LIMIT_FACTOR = 4  # ...unless they are this many times the bound: then at once
EXIT_DEADLINE_SECONDS = 9.0  # a draining process exits by then, whatever is left
# Connections waiting while accepting is paused (admission.py) queue in the kernel,
# up to this many per port unless the endpoint names its own; past it the kernel
# drops their SYNs and the clients' TCP retries them. A longer queue would only
# hold clients past their handshake timeout (client.js: 10 s).
LISTEN_BACKLOG = 128
ACCEPT_RESUME_CHECK_SECONDS = 0.02  # while paused, how often to look for room again


def unsent_bytes(transport: Any) -> int | None:
    """What Twisted still holds for a TCP transport (its abstract.FileDescriptor buffers), or None if unknown."""
    try:
        return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)
    except AttributeError:
        return None


class BoundedWebSocketProtocol(WebSocketProtocol):
    """A daphne WebSocket whose unsent bytes are bounded (see the module's docstring)."""

    send_buffer_bytes = 0  # set on a subclass by NotificationServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._written = 0  # bytes handed to the transport so far
        self._frame_ends: list[int] = []  # where each of them ends: only frames not yet begun are dropped
        self._over_limit = False
        self._check: Any = None  # a pending _check_unsent

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        super().sendData(data, sync, chopsize)  # one call per frame
        self._written += len(data)
        self._frame_ends.append(self._written)

    def sendMessage(self, payload: bytes, isBinary: bool = False, *args: Any, **kwargs: Any) -> None:
        # autobahn holds what the server sends to maxMessagePayloadSize too; the limit
        # is for what clients send (a replay's batch frames may be larger).
        limit: int = getattr(self, "maxMessagePayloadSize", 0)
        self.maxMessagePayloadSize = 0
        try:
            super().sendMessage(payload, isBinary, *args, **kwargs)
        finally:
            self.maxMessagePayloadSize = limit

    def serverSend(self, content: Any, binary: bool = False) -> None:
        # Closing (too slow, or a close handshake the client or autobahn began, as on a
        # protocol error): the app learns of it only at disconnect, and may send until
        # then. Nothing is lost: the client replays from its cursor on its next socket.
        if self._over_limit or self.state != WebSocketProtocol.STATE_OPEN:
            return
        super().serverSend(content, binary)
        unsent = unsent_bytes(self.transport)
        if unsent is None:
            return
        if unsent > HARD_LIMIT_FACTOR * self.send_buffer_bytes:
            self._close_slow_consumer(unsent)
        elif unsent > self.send_buffer_bytes and self._check is None:
            # A round of pushes is written in one turn of the loop, before Twisted flushes
            # any of it: judge what is still unsent a moment later, not the burst itself.
            self._check = reactor.callLater(SLOW_CHECK_SECONDS, self._check_unsent)
        if len(self._frame_ends) > 1000:
            self._forget_sent_frames(self._written - unsent)

    def _check_unsent(self) -> None:
        self._check = None
        unsent = unsent_bytes(self.transport)
        if not self._over_limit and unsent is not None and unsent > self.send_buffer_bytes:
            self._close_slow_consumer(unsent)

    def _close_slow_consumer(self, unsent: int) -> None:
        self._over_limit = True
        log.warning("closing a slow consumer (%s): %d bytes unsent", self.client_addr, unsent)
        self._drop_frames_not_begun(unsent)
        self.sendCloseFrame(code=protocol.CLOSE_SLOW_CONSUMER)
        # Not autobahn's close handshake timer (1 s, then an abort that would discard
        # the close frame): the peer gets a while to read it.
        timer = getattr(self, "closeHandshakeTimeoutCall", None)
        if timer is not None:
            timer.cancel()
            self.closeHandshakeTimeoutCall = None
        # Reading goes on, so the client's close reply (and any ping) is taken, and the
        # close handshake ends the connection as usual; a client that never reads is cut off.
        reactor.callLater(SLOW_CLOSE_GRACE_SECONDS, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self.state != WebSocketProtocol.STATE_CLOSED:
            self.transport.abortConnection()

    def _drop_frames_not_begun(self, unsent: int) -> None:
        transport = self.transport
        consumed = self._written - unsent
        frame_end = next((end for end in self._frame_ends if end > consumed), consumed)
        keep = frame_end - consumed  # the rest of the frame the kernel has begun to take
        pending = bytes(memoryview(transport.dataBuffer)[transport.offset :]) + b"".join(transport._tempDataBuffer)
        transport.dataBuffer, transport.offset = pending[:keep], 0
        transport._tempDataBuffer, transport._tempDataLen = [], 0
        self._written = frame_end
        self._frame_ends = [frame_end]

    def _forget_sent_frames(self, consumed: int) -> None:
        self._frame_ends = [end for end in self._frame_ends if end > consumed] or [self._written]


class NotificationServer(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = conf.get()
        kwargs["websocket_max_message_size"] = kwargs["websocket_max_frame_size"] = settings.max_frame_bytes
        kwargs["endpoints"] = [_with_backlog(e) for e in kwargs.get("endpoints") or []]
        super().__init__(*args, **kwargs)
        self.send_buffer_bytes = settings.send_buffer_bytes
        self.drain_seconds = settings.drain_seconds
        self.ports: list[Any] = []
        self.draining = False
        self.accept_paused = False

    def run(self) -> None:
        reactor.callWhenRunning(self._started)
        super().run()

    def _started(self) -> None:
        # A client that breaks the protocol (a frame over the limit) is told why with a close
        # frame (1009), not dropped without one.
        self.ws_factory.setProtocolOptions(failByDrop=False)
        # autobahn copies each of its ~40 options from the factory onto every connection
        # that lacks them; as class attributes they are held once, not per socket.
        # (Not the callables: on a class, a function would become a method.)
        options = {name: value for name in BoundedWebSocketProtocol.CONFIG_ATTRS if not callable(value := getattr(self.ws_factory, name))}
        self.ws_factory.protocol = type(
            "WebSocketProtocol", (BoundedWebSocketProtocol,), {**options, "send_buffer_bytes": self.send_buffer_bytes}
        )
        # daphne builds its HTTP factory in run(), so the wrap is on the instance.
        self._build_http = self.http_factory.buildProtocol
        self.http_factory.buildProtocol = self._accept
        # After Twisted's own handlers, which would stop the reactor at once.
        signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(self.drain))

    def _accept(self, address: Any) -> Any:
        """Each accepted connection holds a place in admission (admission.py); once they fill it, accepting pauses.

        A refusal after the handshake costs the process about as much as an admission,
        and a storm of them leaves it no time for the sockets it let in (docs/decisions/0011).
        Closing the excess as it was accepted was cheap, but sent each client into a
        backoff of up to 30 s; queued in the kernel, it waits its turn (docs/decisions/0012).
        """
        if not admission.may_accept:
            return None  # room ran out since the batch began (a slow handshake's place came back late): Twisted closes it
        admission.accepted()
        if not admission.may_accept:
            self._pause_accepting()
        return self._build_http(address)

    def _pause_accepting(self) -> None:
        if not self.accept_paused:
            self.accept_paused = True
            for port in self.ports:
                port.stopReading()
            reactor.callLater(ACCEPT_RESUME_CHECK_SECONDS, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self.draining:
            return
        if not admission.may_accept:
            reactor.callLater(ACCEPT_RESUME_CHECK_SECONDS, self._resume_accepting)
            return
        self.accept_paused = False
        for port in self.ports:
            port.startReading()

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        read = port.doRead

        def paced_read() -> Any:
            # Twisted accepts up to numberAccepts connections a turn (and grows it): no more than there is room for.
            port.numberAccepts = max(1, admission.room)
            return read()

        port.doRead = paced_read
        super().listen_success(port)
        log.info("pid %d listening on %s", os.getpid(), port.getHost())  # daphne's own line is below its log level here
        ready = os.environ.pop(supervisor.READY_FD, None)
        if ready is not None:  # a parent restarting its workers waits for this before it drains the old one
            os.write(int(ready), b"1")
            os.close(int(ready))

    def drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        reactor.callLater(EXIT_DEADLINE_SECONDS, self._exit)
        for port in self.ports:
            port.stopListening()
        sockets = [p for p in self.connections if isinstance(p, WebSocketProtocol) and p.state == WebSocketProtocol.STATE_OPEN]
        random.shuffle(sockets)
        log.info("draining: closing %d sockets with 1012 over %.1fs", len(sockets), self.drain_seconds)
        for index, socket in enumerate(sockets):
            # sendCloseFrame: autobahn's sendClose refuses 1012 (it allows 1000 and 3000-4999 only).
            reactor.callLater(self.drain_seconds * index / len(sockets), socket.sendCloseFrame, protocol.CLOSE_SERVER_RESTARTING)
        reactor.callLater(self.drain_seconds + 0.5, self._leave)

    def _leave(self) -> None:
        done = defer.Deferred.fromFuture(asyncio.ensure_future(lifecycle.stop()))
        done.addBoth(lambda _: self._exit())

    def _exit(self) -> None:
        if reactor.running:
            reactor.stop()


def _with_backlog(endpoint: str) -> str:
    """A TCP endpoint description with our listen backlog, unless it names one."""
    if endpoint.startswith("tcp:") and "backlog=" not in endpoint:
        return f"{endpoint}:backlog={LISTEN_BACKLOG}"
    return endpoint


class NotificationServerCLI(CommandLineInterface):
    server_class = NotificationServer


def main() -> None:
    workers, daphne_args = supervisor.workers_option(sys.argv[1:], os.environ)
    if workers > 1:
        sys.exit(supervisor.run(workers=workers, argv=daphne_args, backlog=LISTEN_BACKLOG))
    NotificationServerCLI().run(daphne_args)


if __name__ == "__main__":
    main()
