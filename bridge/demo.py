"""``make demo``: the simulator, the bridge and a scripted conversation, printed as it happens.

Everything runs in this process against the local RabbitMQ, with exchange and queue names unique to
this run (deleted at the end). The demo plays a backend service: it publishes commands exactly as an
integrator would and prints every event the bridge publishes. The bridge's own logs go to stderr.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Callable
from typing import Any

from bridge.amqp.tools import CommandPublisher, delete_deployment, follow_events
from bridge.app import running_bridge
from bridge.config import Settings
from bridge.observability.logging import configure_logging
from bridge.present import describe_event
from bridge.simulator import Simulator, SimulatorConfig
from bridge.store import generate_key
from bridge.tasks import TaskGroup
from genesys_bridge_client.contract.codec import decode_event
from genesys_bridge_client.contract.content import QuickReplyPart
from genesys_bridge_client.contract.events import CommandOutcome, Event, MessageReceived

__all__ = ["main"]

STEP_TIMEOUT_S = 20.0


class _Events:
    """Events of the demo session in arrival order; await conditions instead of sleeping."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._changed = asyncio.Condition()

    async def add(self, event: Event) -> None:
        async with self._changed:
            self.seen.append(event)
            print(f"  <- {describe_event(event)}", flush=True)
            self._changed.notify_all()

    async def until(self, predicate: Callable[[Event], bool]) -> Event:
        async with asyncio.timeout(STEP_TIMEOUT_S), self._changed:
            await self._changed.wait_for(lambda: any(predicate(e) for e in self.seen))
            return next(e for e in self.seen if predicate(e))


def _say(text: str) -> None:
    print(f"\n{text}", flush=True)


async def _conversation(publisher: CommandPublisher, events: _Events, session_id: str) -> None:
    async def send(command: dict[str, Any], note: str) -> str:
        command_id = uuid.uuid4().hex
        _say(f"-> {command['type']}: {note}")
        await publisher.send({"command_id": command_id, "session_id": session_id, **command})
        return command_id

    def outcome_of(command_id: str) -> Callable[[Event], bool]:
        return lambda e: isinstance(e, CommandOutcome) and e.command_id == command_id and e.status != "will_retry"

    await send(
        {
            "type": "session.start",
            "deployment_id": "0f4f1d2a-5b1e-4e0e-9f3a-2f5d8c1a7b10",
            "region": "mypurecloud.com",
            "custom_attributes": {"order_id": "A-991", "tier": "gold"},
        },
        "open a Genesys web-messaging session for this customer",
    )
    await events.until(lambda e: e.type == "session.started")

    sent = await send({"type": "message.send", "text": "Hi, my order A-991 has not arrived."}, "the customer writes")
    await events.until(outcome_of(sent))
    await events.until(lambda e: isinstance(e, MessageReceived) and e.direction == "outbound")

    sent = await send({"type": "message.send", "text": "Can you give me quick options?"}, "ask for choices")
    offer = await events.until(
        lambda e: isinstance(e, MessageReceived) and any(isinstance(p, QuickReplyPart) for p in e.parts)
    )
    assert isinstance(offer, MessageReceived)
    choice = next(p for p in offer.parts if isinstance(p, QuickReplyPart))

    await send({"type": "typing.send"}, "show the customer as typing")
    sent = await send(
        {
            "type": "message.send",
            "button_response": {
                "type": "quick_reply",
                "text": choice.text,
                "payload": choice.payload,
                "originating_message_id": offer.genesys_message_id,
            },
        },
        f"choose the quick reply {choice.text!r}",
    )
    await events.until(outcome_of(sent))

    sent = await send({"type": "message.send", "text": "Please show me a card of your plans."}, "ask for a card")
    await events.until(lambda e: isinstance(e, MessageReceived) and any(p.kind == "card" for p in e.parts))

    ended = await send({"type": "session.end"}, "the customer is done")
    await events.until(outcome_of(ended))
    await events.until(lambda e: e.type == "session.ended")


async def _demo() -> int:
    run = uuid.uuid4().hex[:8]
    prefix = f"demo.{run}"
    amqp_url = os.environ.get("BRIDGE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    # The "real" profile: a new Genesys deployment, so guest typing and Clear are refused (403) and an
    # agent disconnect sends nothing; the demo shows how the bridge reports that.
    async with Simulator(SimulatorConfig(agent_reply_delay_s=0.3)) as sim:
        settings = Settings.load(
            amqp_url=amqp_url,
            command_exchange=f"{prefix}.commands",
            intake_queue=f"{prefix}.intake",
            event_exchange=f"{prefix}.events",
            dead_letter_queue=f"{prefix}.dead-letter",
            journal_stream=f"{prefix}.journal",
            state_key=generate_key(),
            genesys_base_url=sim.base_url,
            http_host="127.0.0.1",
            http_port=0,
            log_format="console",
            log_level="WARNING",
        )
        print("genesys-bridge demo")
        print(f"  simulator (plays Genesys Cloud):  {sim.base_url}")
        print(f"  RabbitMQ:                         {amqp_url.split('@')[-1]}")
        print(f"  commands go to exchange           {settings.command_exchange}")
        print(f"  events come from exchange         {settings.event_exchange}")
        print("  '->' is a command we publish, '<-' an event the bridge publishes:")
        print("  session id, per-session seq, event type, what it says.", flush=True)
        events = _Events()
        try:
            async with (
                running_bridge(settings) as bridge,
                follow_events(amqp_url, exchange=settings.event_exchange) as queue,
                CommandPublisher(amqp_url, exchange=settings.command_exchange) as publisher,
                TaskGroup() as tasks,
            ):
                print(f"  bridge metrics and probes:        http://127.0.0.1:{bridge.http.port}/metrics", flush=True)

                async def pump() -> None:
                    async with queue.iterator() as messages:
                        async for message in messages:
                            async with message.process():
                                await events.add(decode_event(message.body))

                pumping = tasks.create_task(pump())
                try:
                    await _conversation(publisher, events, session_id=f"customer-{run[:4]}")
                finally:
                    pumping.cancel()
        finally:
            await delete_deployment(amqp_url, settings)
    _say(f"Done: {len(events.seen)} events. Integrate with the contract in docs/contract.md.")
    return 0


def main() -> int:
    """Run the demo; returns the process exit code."""
    configure_logging(level="WARNING", fmt="console", stream=sys.stderr)
    try:
        return asyncio.run(_demo())
    except TimeoutError:
        print("demo: a step did not complete in time (see the log above)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
