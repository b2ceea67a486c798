"""Serve an aiohttp application on a TCP port: the one place our HTTP servers bind."""

from __future__ import annotations

from typing import Self

from aiohttp import web

__all__ = ["AppServer", "serve_app"]


async def serve_app(app: web.Application, host: str, port: int, *, backlog: int = 128) -> tuple[web.AppRunner, int]:
    """Bind ``app`` on ``host:port`` (``port=0`` picks a free one) and start serving.

    Returns the runner and the bound port. The caller owns the runner and must ``await runner.cleanup()``
    to stop. No access log: probes, scrapes and simulator traffic would drown the useful lines.

    Raises:
        OSError: the address is taken or cannot be bound (nothing is left running).
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=backlog).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])


class AppServer:
    """An aiohttp application served on ``host:port`` (``port=0`` picks a free one) for ``async with`` (or
    :meth:`start` once and :meth:`stop` at shutdown). Subclasses build the application in :meth:`_build`."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._requested_port = port
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        # Host and port only: a subclass's secrets (a token) must never reach a log through a repr.
        return f"{type(self).__name__}(host={self._host!r}, port={self._port or self._requested_port})"

    @property
    def port(self) -> int:
        """The bound port. Only valid after :meth:`start`."""
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    def _build(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        """Bind and serve. Raises ``OSError`` when the address is taken (a startup error for the app)."""
        self._runner, self._port = await serve_app(self._build(), self._host, self._requested_port)

    async def stop(self) -> None:
        """Stop serving. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
