"""Micro-benchmark, not in the suite: the same loopback socket work on asyncio's loop and on uvloop.

One process plays both ends, so every figure is CPU of one thread doing the event loop's work twice (client
and server): TCP echo round trips over asyncio streams, and WebSocket echo round trips (the websockets
library, as the bridge uses it, compression off). The two loops alternate, repetition by repetition, so
both see the same machine. Prints µs of CPU per round trip, median [min–max], and the ratio.

    python -m bench.micro_loop [--reps 5] [--conns 100] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from bench.stats import spread
from bridge.eventloop import LoopChoice, choose_loop


async def _tcp(conns: int, rounds: int) -> int:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(line)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(rounds):
            writer.write(b'{"type":"message.send","text":"hello"}\n')
            await reader.readline()
        writer.close()
        await writer.wait_closed()

    async with server:
        await asyncio.gather(*(client() for _ in range(conns)))
    return conns * rounds


async def _ws(conns: int, rounds: int) -> int:
    async def echo(ws: ServerConnection) -> None:
        async for frame in ws:
            await ws.send(frame)

    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]

        async def client() -> None:
            async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
                for _ in range(rounds):
                    await ws.send('{"action":"onMessage","message":{"type":"Text","text":"hello"}}')
                    await ws.recv()

        await asyncio.gather(*(client() for _ in range(conns)))
    return conns * rounds


Work = Callable[[int, int], Coroutine[Any, Any, int]]


def _cpu_us_per_trip(choice: LoopChoice, work: Work, conns: int, rounds: int) -> float:
    with asyncio.Runner(loop_factory=choice.factory) as runner:
        start = time.process_time()
        trips = runner.run(work(conns, rounds))
        return (time.process_time() - start) / trips * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    loops = [choose_loop("asyncio"), choose_loop("uvloop")]
    for label, work in (("tcp echo", _tcp), ("websocket echo", _ws)):
        samples: dict[str, list[float]] = {choice.name: [] for choice in loops}
        _cpu_us_per_trip(loops[0], work, args.conns, 10)  # warm up imports and caches
        for _ in range(args.reps):
            for choice in loops:
                samples[choice.name].append(_cpu_us_per_trip(choice, work, args.conns, args.rounds))
        base, fast = spread(samples["asyncio"]), spread(samples["uvloop"])
        print(
            f"{label:15} asyncio {base.fmt(1)} µs/trip   uvloop {fast.fmt(1)} µs/trip   "
            f"asyncio/uvloop {base.median / fast.median:.2f}x"
        )


if __name__ == "__main__":
    main()
