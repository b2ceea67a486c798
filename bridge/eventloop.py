"""Which event loop the daemon runs on (``BRIDGE_EVENT_LOOP``): uvloop when it is there, else asyncio's.

uvloop (libuv underneath) does the same socket and callback work as asyncio's loop with less CPU per
operation, and the event loop is the largest layer of the bridge's CPU profile (docs/performance.md). It is
a runtime dependency on the platforms that have wheels for it; ``auto`` still falls back to asyncio where it
is missing, so a source install on another platform runs, only slower.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bridge.errors import ConfigError

__all__ = ["LoopChoice", "choose_loop", "loop_name"]


@dataclass(frozen=True)
class LoopChoice:
    """The loop to run the daemon on: its name (as logged) and what creates it."""

    name: Literal["asyncio", "uvloop"]
    factory: Callable[[], asyncio.AbstractEventLoop]


def choose_loop(setting: Literal["auto", "asyncio", "uvloop"]) -> LoopChoice:
    """The loop ``BRIDGE_EVENT_LOOP`` asks for.

    Raises:
        ConfigError: ``uvloop`` was asked for and cannot be imported (a start-up error, exit 78).
    """
    if setting == "asyncio":
        return LoopChoice("asyncio", asyncio.new_event_loop)
    try:
        import uvloop
    except ImportError as missing:
        if setting == "uvloop":
            raise ConfigError(
                f"BRIDGE_EVENT_LOOP=uvloop, but uvloop cannot be imported ({missing}): "
                "install it, or set BRIDGE_EVENT_LOOP=auto or asyncio"
            ) from None
        return LoopChoice("asyncio", asyncio.new_event_loop)
    return LoopChoice("uvloop", uvloop.new_event_loop)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: what ``loop`` is, for the ``bridge_started`` log line."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
