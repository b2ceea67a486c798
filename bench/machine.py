"""What machine a figure was measured on: every absolute number in the results sits next to this."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import sys
from typing import Any

__all__ = ["describe_machine", "loop_name"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mib() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def loop_name() -> str:
    """``"uvloop"`` when uvloop is importable and installed as the policy, else ``"asyncio"``."""
    policy = type(asyncio.get_event_loop_policy()).__module__
    return "uvloop" if policy.startswith("uvloop") else "asyncio"


def describe_machine() -> dict[str, Any]:
    """nproc, CPU model, memory, Python version, event loop, date (UTC)."""
    try:
        import uvloop  # noqa: F401  # only to report whether it is installed

        uvloop_installed = True
    except ImportError:
        uvloop_installed = False
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_total_mib": _mem_total_mib(),
        "python": sys.version.split()[0],
        "event_loop": loop_name(),
        "uvloop_installed": uvloop_installed,
        "kernel": platform.release(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
