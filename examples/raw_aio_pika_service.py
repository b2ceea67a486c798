"""The same service as examples/client_service.py with aio-pika alone: no client package, plain JSON.

Everything a team without our client needs: bind a queue to the event exchange *before* starting the
session, publish commands as JSON with the command type as routing key, and read events by their "type".
Run: RABBITMQ_URL=amqp://guest:guest@localhost/ GENESYS_DEPLOYMENT_ID=<id> python examples/raw_aio_pika_service.py
"""

import asyncio
import json
import os
import uuid
from typing import Any

import aio_pika


async def main() -> None:
    session_id = os.environ.get("SESSION_ID", "order-4711")
    connection = await aio_pika.connect(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost/"))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        commands = await channel.get_exchange(os.environ.get("GENESYS_COMMAND_EXCHANGE", "genesys.commands"))
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(os.environ.get("GENESYS_EVENT_EXCHANGE", "genesys.events"), routing_key="#.orders")

        async def send(command: dict[str, Any]) -> None:
            command = {"command_id": uuid.uuid4().hex, "session_id": session_id, **command}
            body = json.dumps(command).encode()
            message = aio_pika.Message(body, content_type="application/json", delivery_mode=2)
            await commands.publish(message, routing_key=command["type"])

        await send(
            {
                "type": "session.start",
                "deployment_id": os.environ["GENESYS_DEPLOYMENT_ID"],
                "region": os.environ.get("GENESYS_REGION", "mypurecloud.com"),
                "route": "orders",
                "initial_message": "Hi, where is my order 4711?",
            }
        )
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    event = json.loads(message.body)
                    if event["type"] == "message.received" and event["direction"] == "outbound":
                        text = event["text"] or ""
                        if text.strip().lower() == "bye":
                            await send({"type": "message.send", "text": "Goodbye!"})
                            await send({"type": "session.end"})
                        else:
                            await send({"type": "message.send", "text": f"You said: {text}"})
                    elif event["type"] == "command.outcome" and event["status"] in ("rejected", "failed"):
                        raise SystemExit(f"{event['command_type']} {event['status']}: {event['reason']}")
                    elif event["type"] == "session.ended":
                        print(f"session ended: {event['reason']}")
                        return


if __name__ == "__main__":
    asyncio.run(main())
