"""A WebSocket echo server for the baseline pipeline, run in its own process.

``python -m bench.echo_server --port 0`` prints ``PORT <n>`` on stdout once listening and serves until
stdin closes (the parent exits) or SIGTERM. Compression and keepalive pings are off, like the bridge's
client side, so the server costs what a minimal Genesys stand-in would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from websockets.asyncio.server import ServerConnection, serve


async def _echo(ws: ServerConnection) -> None:
    with contextlib.suppress(Exception):  # a client dropping mid-frame ends only its own connection
        async for message in ws:
            await ws.send(message)


async def _main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # stdin closing means the parent is gone: stop with it rather than linger.
    stdin = sys.stdin.fileno()
    loop.add_reader(stdin, lambda: None if os.read(stdin, 4096) else stop.set())
    async with serve(
        _echo, host, port, compression=None, ping_interval=None, max_size=64 * 1024, backlog=4096
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        print(f"PORT {bound}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
