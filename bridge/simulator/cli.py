"""``python -m bridge.simulator`` / ``genesys-bridge simulate``: run the simulator until SIGINT/SIGTERM.

The first line on stdout is ``listening on http://HOST:PORT`` (flushed), so a parent process started with
``--port 0`` can read the bound port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Sequence

from bridge.simulator.config import PROFILES, SimulatorConfig
from bridge.simulator.server import Simulator

__all__ = ["DESCRIPTION", "add_arguments", "build_parser", "config_from_args", "main", "run"]


def _optional_limit(text: str) -> int | None:
    return None if text.lower() in ("none", "off", "0") else int(text)


#: What the simulator's command line is for, shown by both ``--help`` screens.
DESCRIPTION = "Run the local Genesys Web Messaging simulator."


def build_parser(prog: str = "python -m bridge.simulator") -> argparse.ArgumentParser:
    """The standalone parser (``python -m bridge.simulator``): :func:`add_arguments` on a parser of its own."""
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser``, the one definition both ``python -m bridge.simulator`` and
    ``genesys-bridge simulate`` use: a profile (:data:`PROFILES`), then a subset of :class:`SimulatorConfig`
    whose options override it. An option left out keeps the profile's value.

    The caller passes the parsed namespace to :func:`run` (or :func:`config_from_args`); ``parser`` must not
    define options of the same names.
    """
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="real",
        help="real: a new Genesys deployment (default); everything-on: disconnect, clear, typing, traced errors",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on the first line)")
    parser.add_argument(
        "--deployment",
        action="append",
        dest="deployments",
        metavar="ID",
        help="accept only these deployment ids (repeatable); default: any",
    )
    parser.add_argument("--unknown-deployment-mode", choices=("configure_400", "upgrade_403"), default="configure_400")
    parser.add_argument(
        "--origin",
        action="append",
        dest="origins",
        metavar="ORIGIN",
        help="accept only these Origins (repeatable); default: any",
    )
    parser.add_argument("--message-rate", type=float, help="onMessage per second per session (default 2; 0 = off)")
    parser.add_argument(
        "--connections-per-min",
        type=_optional_limit,
        default=None,
        help="new sockets per deployment per minute; 'none' = unlimited (default)",
    )
    parser.add_argument("--session-duration", type=float, help="inactivity TTL in seconds (default 259200)")
    feature = argparse.BooleanOptionalAction
    parser.add_argument("--disconnect", action=feature, help="conversationDisconnect: send a Presence Disconnect")
    parser.add_argument("--disconnect-mode", choices=("read_only", "send"), help="conversationDisconnect type")
    parser.add_argument(
        "--disconnect-overtakes",
        choices=("off", "late", "lost"),
        help="the agent's last message before a Disconnect reaches the guest before it, after it, or never",
    )
    parser.add_argument("--typing", action=feature, help="showUserTypingIndicator (off: guest typing gets 403)")
    parser.add_argument("--clear", action=feature, help="conversationClear (off: Presence Clear gets 403)")
    parser.add_argument("--auth", action=feature, help="auth.enabled: authenticated sessions and the token endpoints")
    parser.add_argument("--error-tracing-id", choices=("never", "always"), help="error frames copy tracingId")
    parser.add_argument("--no-agent", action="store_true", help="turn the scripted agent off")
    parser.add_argument("--agent-delay", type=float, default=0.0, help="seconds between agent typing and reply")
    parser.add_argument("--compression", action="store_true", help="offer permessage-deflate (off by default)")


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Map parsed options onto the chosen profile."""
    config = dataclasses.replace(
        PROFILES[args.profile],
        host=args.host,
        port=args.port,
        allowed_deployments=frozenset(args.deployments) if args.deployments else None,
        unknown_deployment_mode=args.unknown_deployment_mode,
        allowed_origins=frozenset(args.origins) if args.origins else None,
        connections_per_min=args.connections_per_min,
        agent_script=not args.no_agent,
        agent_reply_delay_s=args.agent_delay,
        compression=args.compression,
    )
    if args.message_rate is not None:
        config = dataclasses.replace(config, message_rate_per_s=args.message_rate if args.message_rate > 0 else None)
    # A flag given on the command line overrides the profile's knob; one not given leaves it alone.
    overrides = {knob: value for flag, knob in _FLAG_KNOBS.items() if (value := getattr(args, flag)) is not None}
    return dataclasses.replace(config, **overrides)


#: Command-line flag (argparse dest) → the SimulatorConfig knob it sets.
_FLAG_KNOBS: dict[str, str] = {
    "session_duration": "session_duration_s",
    "disconnect": "disconnect_enabled",
    "disconnect_mode": "disconnect_mode",
    "disconnect_overtakes": "disconnect_overtakes_last_message",
    "typing": "typing_enabled",
    "clear": "clear_enabled",
    "auth": "auth_enabled",
    "error_tracing_id": "error_tracing_id",
}


async def serve(config: SimulatorConfig) -> None:
    """Run until SIGINT or SIGTERM, printing the bound URL first."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Simulator(config) as sim:
            print(f"listening on {sim.base_url}", flush=True)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 after a signal, 1 when the port cannot be bound, 2 bad usage)."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Serve with the options :func:`add_arguments` parsed into ``args`` until SIGINT/SIGTERM.

    Returns the exit code: 0 after a signal, 1 when the port cannot be bound.
    """
    try:
        asyncio.run(serve(config_from_args(args)))
    except OSError as exc:
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
