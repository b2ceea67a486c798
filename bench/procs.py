"""Child processes and what /proc says about them (CPU, RSS), plus the file-descriptor limit.

Children are started with ``PR_SET_PDEATHSIG`` = SIGKILL, so they die with the benchmark even when it is
killed itself; :class:`Child` also kills its whole process group on exit (the caller's duty is only to
use it as an async context manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

__all__ = [
    "Child",
    "CpuSample",
    "cpu_seconds",
    "find_rabbitmq_pid",
    "machine_busy_seconds",
    "raise_nofile_limit",
    "rss_bytes",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it). Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (all its threads), from ``/proc/<pid>/stat``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        text = fh.read()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def syscalls(pid: int) -> tuple[int, int]:
    """``write()``-family and ``read()``-family system calls ``pid`` made so far (``syscw``, ``syscr`` of
    ``/proc/<pid>/io``), whatever their size: files and sockets written with ``write``/``writev`` and read
    with ``read``, as uvloop does; ``send``/``recv`` (asyncio's own loop) are not counted."""
    with open(f"/proc/{pid}/io", encoding="ascii") as fh:
        fields = dict(line.split(": ", 1) for line in fh.read().splitlines())
    return int(fields["syscw"]), int(fields["syscr"])


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS) in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (``/proc/stat``: everything but idle and iowait)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _CLK_TCK


def find_rabbitmq_pid() -> int | None:
    """The RabbitMQ server's ``beam.smp`` (cmdline has ``rabbit``, not ``rabbitmqctl``); oldest wins."""
    best: tuple[float, int] | None = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ")
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                stat = fh.read()
        except OSError:
            continue
        if b"beam.smp" not in cmd or b"rabbit" not in cmd or b"rabbitmqctl" in cmd:
            continue
        started = float(stat[stat.rindex(")") + 2 :].split()[19])
        if best is None or started < best[0]:
            best = (started, int(entry))
    return None if best is None else best[1]


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds per named process (and the whole machine) at one instant (monotonic seconds)."""

    at: float
    seconds: dict[str, float]
    machine: float

    @classmethod
    def take(cls, pids: Mapping[str, int | None]) -> CpuSample:
        """Read every pid's CPU time now; a missing or vanished pid reads as nan."""
        values: dict[str, float] = {}
        for name, pid in pids.items():
            try:
                values[name] = cpu_seconds(pid) if pid is not None else float("nan")
            except OSError:
                values[name] = float("nan")
        return cls(asyncio.get_running_loop().time(), values, machine_busy_seconds())

    def share_since(self, earlier: CpuSample) -> dict[str, float]:
        """Per process: CPU seconds used between the samples / wall seconds (1.0 = one core busy).

        ``"other"`` is everything else the machine ran meanwhile (other users' work: the noise).
        """
        wall = self.at - earlier.at
        shares = {name: (self.seconds[name] - earlier.seconds[name]) / wall for name in self.seconds}
        ours = sum(v for v in shares.values() if v == v)  # nan-safe: a vanished pid counts 0
        shares["other"] = max(0.0, (self.machine - earlier.machine) / wall - ours)
        return shares


class Child:
    """A subprocess owned by an ``async with`` block: killed (SIGTERM, then SIGKILL) with its group on exit.

    With ``announce=True`` stdout is a pipe: a pump task (owned here, cancelled on exit) hands the first
    line to :meth:`first_line` and copies the rest to ``log_path``. Otherwise stdout and stderr go straight
    to ``log_path`` (no CPU of ours spent on the child's logs).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        log_path: str | None = None,
        announce: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.name = name
        self.log_path = log_path or os.devnull
        self._announce = announce
        self.proc: asyncio.subprocess.Process | None = None
        self._log: int | None = None
        self._pump: asyncio.Task[None] | None = None
        self._first: asyncio.Future[str] | None = None

    @property
    def pid(self) -> int:
        """The child's pid (it leads its own process group)."""
        assert self.proc is not None, "child not started"
        return self.proc.pid

    async def __aenter__(self) -> Self:
        self._log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if self._announce else self._log,
            stderr=self._log,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # the only way to set PDEATHSIG; no threads run yet
        )
        if self._announce:
            self._first = asyncio.get_running_loop().create_future()
            self._pump = asyncio.create_task(self._pump_stdout(), name=f"{self.name}-stdout")
        return self

    async def _pump_stdout(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        assert self._first is not None
        assert self._log is not None
        while line := await self.proc.stdout.readline():
            if not self._first.done():
                self._first.set_result(line.decode().strip())
            os.write(self._log, line)
        if not self._first.done():
            self._first.set_exception(RuntimeError(f"{self.name} exited before printing its address"))

    async def first_line(self, timeout_s: float) -> str:
        """The first stdout line (e.g. ``listening on http://…``); raises if the child exits first."""
        assert self._first is not None, "start the child with announce=True"
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(self._first)

    def alive(self) -> bool:
        """True while the child runs."""
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, sig: int = signal.SIGTERM, grace_s: float = 5.0) -> int | None:
        """Signal the process group; SIGKILL it after ``grace_s``. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                async with asyncio.timeout(grace_s):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        return self.proc.returncode

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await asyncio.shield(self.stop())
        finally:
            if self.proc is not None and self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
            if self._pump is not None:
                self._pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._pump
            if self._first is not None and not self._first.done():
                self._first.cancel()
            if self._log is not None:
                os.close(self._log)
