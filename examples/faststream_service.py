"""The same service as examples/client_service.py, written with FastStream (and the contract models).

FastStream declares the event queue and its binding, parses each event's JSON (the contract's models
type it), and publishes commands to the command exchange.
Run: RABBITMQ_URL=amqp://guest:guest@localhost/ GENESYS_DEPLOYMENT_ID=<id> python examples/faststream_service.py
"""

import asyncio
import os
import uuid
from typing import Any

from faststream import FastStream
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from pydantic import TypeAdapter

from genesys_bridge_client import (
    Command,
    CommandOutcome,
    Event,
    MessageReceived,
    MessageSend,
    SessionEnd,
    SessionEnded,
    SessionStart,
)

EVENTS: TypeAdapter[Event] = TypeAdapter(Event)
SESSION_ID = os.environ.get("SESSION_ID", "order-4711")
ROUTE = "orders"
broker = RabbitBroker(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost/"))
app = FastStream(broker)
commands = RabbitExchange(os.environ.get("GENESYS_COMMAND_EXCHANGE", "genesys.commands"), ExchangeType.TOPIC)
events = RabbitExchange(os.environ.get("GENESYS_EVENT_EXCHANGE", "genesys.events"), ExchangeType.TOPIC)
# A private queue for this run; a real service names a durable one, shared by its replicas.
inbox = RabbitQueue(f"orders-service.{uuid.uuid4().hex}", exclusive=True, routing_key=f"#.{ROUTE}")


async def send(command: Command) -> None:
    await broker.publish(
        command.model_dump_json(exclude_none=True),
        exchange=commands,
        routing_key=command.type,
        content_type="application/json",
        persist=True,
        message_id=command.command_id,
    )


@broker.subscriber(inbox, events)
async def on_event(body: dict[str, Any]) -> None:
    event = EVENTS.validate_python(body)  # FastStream parsed the JSON; the contract types it
    if isinstance(event, MessageReceived) and event.direction == "outbound":
        answer = "Goodbye!" if (event.text or "").strip().lower() == "bye" else f"You said: {event.text}"
        await send(MessageSend(command_id=uuid.uuid4().hex, session_id=SESSION_ID, text=answer))
        if answer == "Goodbye!":
            await send(SessionEnd(command_id=uuid.uuid4().hex, session_id=SESSION_ID))
    elif isinstance(event, CommandOutcome) and event.status in ("rejected", "failed"):
        print(f"{event.command_type} {event.status}: {event.reason} {event.detail}")
        app.exit()
    elif isinstance(event, SessionEnded):
        print(f"session ended: {event.reason}")
        app.exit()


@app.after_startup
async def start_session() -> None:
    await send(
        SessionStart(
            command_id=uuid.uuid4().hex,
            session_id=SESSION_ID,
            deployment_id=os.environ["GENESYS_DEPLOYMENT_ID"],
            region=os.environ.get("GENESYS_REGION", "mypurecloud.com"),
            route=ROUTE,
            initial_message="Hi, where is my order 4711?",
        )
    )


if __name__ == "__main__":
    asyncio.run(app.run())
