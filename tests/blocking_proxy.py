"""A loopback HTTP proxy that forwards plain HTTP and refuses `Upgrade: websocket`, as a strict corporate proxy does."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.conftest import free_port


class BlockingProxy:
    """Listens on a free loopback port and forwards each connection to `upstream_port`; `blocking` refuses WebSocket handshakes."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.blocking = True
        self.refused = 0  # WebSocket handshakes refused so far
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.closing(client):
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            if self.blocking and b"upgrade: websocket" in head.lower():
                self.refused += 1
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                return  # the server is away (restarting): the browser sees a network error and retries
            with contextlib.closing(upstream):
                upstream.settimeout(None)
                upstream.sendall(head)
                threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
                _pipe(client, upstream)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)
