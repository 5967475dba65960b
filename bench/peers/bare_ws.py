"""Peer 4, the limit: a bare `websockets` server broadcasting in process; nothing stored, no Redis.

`python -m bench.peers.bare_ws PORT`. Clients connect to /ws/ and get a
`welcome`; a publisher connects to /publish and every text frame it sends is
broadcast, as it is, to every connected client.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve

clients: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else ""
    if path.startswith("/publish"):
        async for frame in ws:
            broadcast(clients, frame)
        return
    clients.add(ws)
    try:
        await ws.send(orjson.dumps({"type": "welcome"}).decode())
        await ws.wait_closed()
    finally:
        clients.discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, max_queue=None, backlog=1024) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
