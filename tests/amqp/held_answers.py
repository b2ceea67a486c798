"""A TCP relay in front of the broker that can hold back the broker's answers: a broker that stalls.

Everything the client sends reaches the broker at once; what the broker sends back is passed on only while
the relay is not holding. Held bytes wait in the relay (and in the kernel's socket buffers) and are passed
on, in order, on :meth:`HeldAnswers.release`. Real sockets and the real broker on both sides: the client
under test is a plain aio-pika connection to :attr:`HeldAnswers.url`.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit


class HeldAnswers:
    """``async with HeldAnswers(amqp_url) as relay``: a relay to the broker at ``amqp_url``, at ``relay.url``."""

    def __init__(self, amqp_url: str) -> None:
        self._upstream = urlsplit(amqp_url)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._stack = AsyncExitStack()
        self._pumps: asyncio.TaskGroup | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.url = ""

    def hold(self) -> None:
        """Hold back every answer of the broker from now on."""
        self._flowing.clear()

    def release(self) -> None:
        """Pass on what was held, and everything after it."""
        self._flowing.set()

    async def __aenter__(self) -> Self:
        self._pumps = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        credentials = self._upstream.netloc.rpartition("@")[0]
        self.url = urlunsplit(self._upstream._replace(netloc=f"{credentials}@127.0.0.1:{port}"))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        self._flowing.set()
        for writer in self._writers:  # ends every pump: their readers see the end of the stream
            writer.close()
        await self._server.wait_closed()
        await self._stack.__aexit__(exc_type, exc, tb)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        assert self._pumps is not None
        broker_reader, broker_writer = await asyncio.open_connection(
            self._upstream.hostname, self._upstream.port or 5672
        )
        self._writers += (client_writer, broker_writer)
        self._pumps.create_task(_pump(client_reader, broker_writer, None))
        self._pumps.create_task(_pump(broker_reader, client_writer, self._flowing))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event | None) -> None:
    try:
        while data := await reader.read(65536):
            if flowing is not None:
                await flowing.wait()
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the other side went away: the relay's connection ends with it
    finally:
        writer.close()
