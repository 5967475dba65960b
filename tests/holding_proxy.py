"""A loopback TCP proxy that can hold what the server sends: the client's frames still reach the server, its answers wait.

For the moment between "the server applied it" and "the client heard so": hold, let the
server apply and answer, kill the server; the held answer dies with the connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.conftest import free_port


class HoldingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.holding = False  # while set, bytes from the server are kept here, not passed on
        self.held = 0  # bytes kept so far
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.closing(client):
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                return  # the server is away: the client sees the connection drop and retries
            with contextlib.closing(upstream):
                upstream.settimeout(None)
                threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
                with contextlib.suppress(OSError):
                    while chunk := upstream.recv(65536):
                        if self.holding:
                            self.held += len(chunk)  # never sent: it goes with the connection
                        else:
                            client.sendall(chunk)
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)
