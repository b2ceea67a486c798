"""Command line: ``genesys-bridge run | simulate | demo | send | tail | schema | declare | repartition | keygen | dlq``.

Exit codes: 0 success; 1 a dependency could not be reached at start, the broker refused a declaration,
``repartition`` found a replica still running, or ``dlq`` could not reach its queue (or a replayed command
came back unroutable and stayed in the DLQ);
2 usage error (argparse); 78 invalid configuration (``EXIT_CONFIG``); 130 interrupted.

``send ... --wait`` exits with the command's settled outcome: 0 ``delivered``; 3 ``rejected``
(``EXIT_REJECTED``: bad input, do not retry as is); 4 ``failed`` (``EXIT_FAILED``); 5 no outcome within
``--timeout`` (``EXIT_NO_OUTCOME``: no bridge consuming, or it is still working on it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bridge.errors import EXIT_CONFIG, ConfigError

if TYPE_CHECKING:
    from bridge.amqp.tools import DeadLetter

__all__ = ["EXIT_FAILED", "EXIT_NO_OUTCOME", "EXIT_REJECTED", "main"]

#: ``send --wait``: the outcome was ``rejected``.
EXIT_REJECTED: Final = 3
#: ``send --wait``: the outcome was ``failed``.
EXIT_FAILED: Final = 4
#: ``send --wait``: no settled outcome arrived within ``--timeout``.
EXIT_NO_OUTCOME: Final = 5


def _settings() -> Any:
    from bridge.config import Settings

    return Settings.load()


def _cmd_run(_: argparse.Namespace) -> int:
    from bridge.app import run_daemon, warn_unknown_settings
    from bridge.config import environment_unknowns
    from bridge.eventloop import choose_loop
    from bridge.observability.logging import configure_logging

    settings = _settings()
    loop = choose_loop(settings.event_loop)  # before logging is set up, like any other invalid setting
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    warn_unknown_settings(environment_unknowns())
    with asyncio.Runner(loop_factory=loop.factory) as runner:
        return runner.run(run_daemon(settings))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from bridge.simulator.cli import run

    return run(args)


def _cmd_keygen(_: argparse.Namespace) -> int:
    # The key alone on stdout, so that ``BRIDGE_STATE_KEY=$(genesys-bridge keygen)`` captures exactly it.
    from bridge.store.crypto import generate_key

    print(generate_key())
    return 0


def _version() -> str:
    from bridge import __version__
    from genesys_bridge_client import __version__ as client_version

    return f"genesys-bridge {__version__} (genesys-bridge-client {client_version})"


def _cmd_demo(_: argparse.Namespace) -> int:
    from bridge.demo import main as demo_main

    return demo_main()


def _cmd_schema(args: argparse.Namespace) -> int:
    from bridge.contract.export import write_contract

    for path in write_contract(Path(args.out)):
        print(path)
    return 0


def _build_command(args: argparse.Namespace) -> dict[str, Any] | bytes:
    if args.kind == "json":
        return sys.stdin.buffer.read() if args.json == "-" else bytes(args.json.encode())
    command: dict[str, Any] = {"session_id": args.session}
    if args.kind == "start":
        command |= {"type": "session.start", "deployment_id": args.deployment, "region": args.region}
        if args.origin:
            command["origin"] = args.origin
        if args.attribute:
            command["custom_attributes"] = dict(a.split("=", 1) for a in args.attribute)
    elif args.kind == "message":
        command["type"] = "message.send"
        if args.text is not None:
            command["text"] = args.text
        if args.quick_reply:
            text, _, payload = args.quick_reply.partition("=")
            command["button_response"] = {"type": "quick_reply", "text": text, "payload": payload or text}
    elif args.kind == "typing":
        command["type"] = "typing.send"
    elif args.kind == "end":
        command["type"] = "session.end"
    return command


#: ``send --wait``: the exit code for each settled outcome status (documented in the module docstring).
_OUTCOME_EXIT = {"delivered": 0, "rejected": EXIT_REJECTED, "failed": EXIT_FAILED}


async def _send(args: argparse.Namespace) -> int:
    from bridge.amqp.tools import CommandPublisher
    from bridge.errors import BrokerError

    if args.wait and args.reply_to:
        print("genesys-bridge send: --wait uses a reply queue of its own; leave out --reply-to", file=sys.stderr)
        return 2
    settings = _settings()
    url = args.amqp_url or settings.amqp_url.get_secret_value()
    try:
        async with CommandPublisher(url, exchange=args.exchange or settings.command_exchange) as publisher:
            if not args.wait:
                command_id = await publisher.send(_build_command(args), reply_to=args.reply_to)
                print(command_id or "sent")
                return 0
            command_id, body = await publisher.request(_build_command(args), timeout_s=args.timeout)
    except BrokerError as exc:
        print(f"genesys-bridge send: {exc}", file=sys.stderr)
        return 1
    if body is None:
        print(f"genesys-bridge send: no outcome for {command_id} within {args.timeout:g} s", file=sys.stderr)
        return EXIT_NO_OUTCOME
    return _print_outcome(body, as_json=args.as_json)


def _print_outcome(body: bytes, *, as_json: bool) -> int:
    from bridge.present import describe_event
    from genesys_bridge_client.contract import CommandOutcome
    from genesys_bridge_client.contract.codec import decode_event

    event = decode_event(body)
    print(json.dumps(json.loads(body)) if as_json else describe_event(event), flush=True)
    if not isinstance(event, CommandOutcome):
        return EXIT_NO_OUTCOME  # the bridge sends only outcomes to reply_to; anything else answers nothing
    return _OUTCOME_EXIT.get(event.status, EXIT_NO_OUTCOME)


async def _declare(_: argparse.Namespace) -> int:
    from bridge.amqp.tools import declare_ahead
    from bridge.errors import BridgeError

    try:
        declared = await declare_ahead(_settings())
    except BridgeError as exc:
        print(f"genesys-bridge declare: {exc}", file=sys.stderr)
        return 1
    for line in declared:
        print(f"declared {line}")
    return 0


async def _repartition(_: argparse.Namespace) -> int:
    from bridge.amqp.repartition import repartition
    from bridge.errors import BridgeError

    try:
        report = await repartition(_settings(), say=lambda line: print(line, flush=True))
    except BridgeError as exc:
        print(f"genesys-bridge repartition: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report.partitions_before} -> {report.partitions_after} partitions: {report.commands_moved} command(s) "
        f"moved, {report.probes_dropped} probe(s) dropped, {report.sessions_live} live session(s), "
        f"{report.records_copied} record(s) copied" + (", intake queue upgraded" if report.upgraded_intake else "")
    )
    return 0


async def _dlq(args: argparse.Namespace) -> int:
    from bridge.amqp.tools import DeadLetterQueue
    from bridge.errors import BridgeError

    settings = _settings()
    url = args.amqp_url or settings.amqp_url.get_secret_value()
    try:
        async with DeadLetterQueue(
            url, queue=settings.dead_letter_queue, command_exchange=settings.command_exchange
        ) as dlq:
            if args.action == "list":
                letters = await dlq.browse(limit=args.limit)
                _print_dead_letters(letters, as_json=args.as_json)
                if not args.as_json:
                    print(f"{len(letters)} dead-lettered command(s) in {settings.dead_letter_queue}; none removed")
                return 0
            result = await dlq.replay(limit=args.limit, reason=args.reason, command_id=args.command_id)
    except BridgeError as exc:
        print(f"genesys-bridge dlq {args.action}: {exc}", file=sys.stderr)
        return 1
    for letter in result.replayed:
        print(f"replayed {letter.command_id or '-'} ({letter.reason or '?'}) -> {letter.routing_key}")
    for letter in result.unroutable:
        print(f"genesys-bridge dlq replay: {letter.command_id or '-'} returned unroutable, kept", file=sys.stderr)
    print(f"{len(result.replayed)} replayed, {result.kept + len(result.unroutable)} kept")
    return 1 if result.unroutable else 0


def _print_dead_letters(letters: Sequence[DeadLetter], *, as_json: bool) -> None:
    for number, letter in enumerate(letters, 1):
        if as_json:
            print(json.dumps(letter.as_dict()))
            continue
        ids = " ".join(
            f"{k}={v}"
            for k, v in (("command_id", letter.command_id), ("session_id", letter.session_id), ("type", letter.type))
            if v
        )
        print(f"{number:>3}  {letter.reason or '?'}  {ids or '(no ids readable)'}  routing_key={letter.routing_key}")
        if letter.detail:
            print(f"     detail: {letter.detail}")
        print(f"     body: {letter.preview}")


async def _tail(args: argparse.Namespace) -> int:
    from bridge.amqp.tools import follow_events
    from bridge.present import describe_event
    from genesys_bridge_client.contract.codec import decode_event

    settings = _settings()
    url = args.amqp_url or settings.amqp_url.get_secret_value()
    async with follow_events(url, exchange=args.exchange or settings.event_exchange, binding=args.binding) as queue:
        print(f"following {args.exchange or settings.event_exchange} with binding {args.binding!r}", flush=True)
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    if args.json:
                        print(json.dumps(json.loads(message.body)), flush=True)
                    else:
                        print(describe_event(decode_event(message.body)), flush=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    from bridge.simulator.cli import DESCRIPTION as SIM_DESCRIPTION
    from bridge.simulator.cli import add_arguments as add_simulator_arguments

    parser = argparse.ArgumentParser(
        prog="genesys-bridge",
        description="Hold Genesys Cloud web-messaging conversations from backend services over RabbitMQ.",
        # The epilog lists every command's usage line; the raw formatter keeps it one command per line.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run the daemon (settings from BRIDGE_* environment variables)").set_defaults(
        func=_cmd_run
    )
    simulate = sub.add_parser(
        "simulate", help="run the local Genesys simulator; prints 'listening on URL' first", description=SIM_DESCRIPTION
    )
    add_simulator_arguments(simulate)
    simulate.set_defaults(func=_cmd_simulate)
    sub.add_parser("demo", help="simulator + bridge + a scripted conversation, printed").set_defaults(func=_cmd_demo)

    sub.add_parser(
        "keygen", help="print a fresh state key for BRIDGE_STATE_KEY (only the key, on stdout)"
    ).set_defaults(func=_cmd_keygen)

    schema = sub.add_parser("schema", help="write JSON Schemas and the AsyncAPI document")
    schema.add_argument("--out", default="docs/contract", help="output folder (default: docs/contract)")
    schema.set_defaults(func=_cmd_schema)

    send = sub.add_parser("send", help="publish a command")
    send.add_argument("--amqp-url", help="default: BRIDGE_AMQP_URL")
    send.add_argument("--exchange", help="default: BRIDGE_COMMAND_EXCHANGE")
    send.add_argument("--reply-to", help="queue that also receives the command.outcome")
    # The waiting options go on each kind, so they can follow the command's own options (send message ... --wait).
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--wait",
        action="store_true",
        help="wait for the settled command.outcome and print it; exit 0 delivered, 3 rejected, 4 failed, 5 none",
    )
    waiting.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="with --wait: give up after S seconds (default 30)"
    )
    # dest: ``send json`` has a positional named json (the raw command).
    waiting.add_argument("--json", action="store_true", dest="as_json", help="with --wait: print the outcome's JSON")
    kinds = send.add_subparsers(dest="kind", required=True)
    start = kinds.add_parser("start", help="session.start", parents=[waiting])
    start.add_argument("--session", required=True)
    start.add_argument("--deployment", required=True)
    start.add_argument("--region", default="mypurecloud.com")
    start.add_argument("--origin")
    start.add_argument("--attribute", action="append", metavar="KEY=VALUE", help="custom attribute (repeatable)")
    message = kinds.add_parser("message", help="message.send", parents=[waiting])
    message.add_argument("--session", required=True)
    message.add_argument("--text")
    message.add_argument("--quick-reply", metavar="TEXT[=PAYLOAD]", help="answer a quick reply")
    for name, help_text in (("typing", "typing.send"), ("end", "session.end")):
        kinds.add_parser(name, help=help_text, parents=[waiting]).add_argument("--session", required=True)
    raw = kinds.add_parser("json", help="publish a raw JSON command (as given, even if invalid)", parents=[waiting])
    raw.add_argument("json", help="the JSON text, or - for standard input")
    send.set_defaults(func=lambda a: asyncio.run(_send(a)))

    sub.add_parser(
        "declare",
        help="declare the exchanges, queues and journal stream ahead of the first start (BRIDGE_* settings)",
    ).set_defaults(func=lambda a: asyncio.run(_declare(a)))

    sub.add_parser(
        "repartition",
        help="move a stopped deployment's queues and journal to BRIDGE_PARTITIONS partitions (docs/scaling.md)",
    ).set_defaults(func=lambda a: asyncio.run(_repartition(a)))

    dlq = sub.add_parser("dlq", help="list or replay dead-lettered commands (BRIDGE_DEAD_LETTER_QUEUE)")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="show dead-lettered commands, leaving them in place")
    listing.add_argument("--json", action="store_true", dest="as_json", help="one JSON object per command")
    replay = actions.add_parser(
        "replay",
        help="republish matching ones to the command exchange (original routing key); removed once confirmed",
    )
    replay.add_argument("--reason", help="only those rejected for this reason, e.g. schema_invalid")
    replay.add_argument("--command-id", help="only the command with this command_id")
    for action in (listing, replay):
        action.add_argument("--amqp-url", help="default: BRIDGE_AMQP_URL")
        action.add_argument("--limit", type=int, metavar="N", help="at most N commands (default: all)")
    dlq.set_defaults(func=lambda a: asyncio.run(_dlq(a)))

    tail = sub.add_parser("tail", help="follow events in readable form")
    tail.add_argument("--amqp-url", help="default: BRIDGE_AMQP_URL")
    tail.add_argument("--exchange", help="default: BRIDGE_EVENT_EXCHANGE")
    tail.add_argument("--binding", default="#", help="routing key pattern, e.g. 'message.received.#'")
    tail.add_argument("--json", action="store_true", help="print each event's JSON instead")
    tail.set_defaults(func=lambda a: asyncio.run(_tail(a)))

    # argparse's top-level help names the commands only; their options (the simulator's included) would
    # otherwise be one --help further away.
    parser.epilog = "the commands' options (genesys-bridge COMMAND --help explains each):\n" + "".join(
        "  " + command.format_usage().removeprefix("usage: ") for command in sub.choices.values()
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"genesys-bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
