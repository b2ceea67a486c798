"""Serve an aiohttp application on a TCP port: the one place both of our HTTP servers bind."""

from __future__ import annotations

from aiohttp import web

__all__ = ["serve_app"]


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
