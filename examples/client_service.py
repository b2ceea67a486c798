"""A service that holds a Genesys conversation with genesys-bridge-client.

It starts a session (with its own route, so it sees its own conversations only), answers every agent or
bot message, and says goodbye and ends the session when the agent writes "bye".
Run: RABBITMQ_URL=amqp://guest:guest@localhost/ GENESYS_DEPLOYMENT_ID=<id> python examples/client_service.py
"""

import asyncio
import os

from genesys_bridge_client import BridgeClient, MessageReceived, SessionEnded


async def main() -> None:
    session_id = os.environ.get("SESSION_ID", "order-4711")
    async with (
        BridgeClient(
            os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost/"),
            route="orders",
            command_exchange=os.environ.get("GENESYS_COMMAND_EXCHANGE", "genesys.commands"),
            event_exchange=os.environ.get("GENESYS_EVENT_EXCHANGE", "genesys.events"),
        ) as bridge,
        bridge.events() as events,  # bound to "#.orders" before the session starts, so nothing is missed
    ):
        started = await bridge.start_session(
            session_id,
            deployment_id=os.environ["GENESYS_DEPLOYMENT_ID"],
            region=os.environ.get("GENESYS_REGION", "mypurecloud.com"),
            initial_message="Hi, where is my order 4711?",
        )
        if started.status != "delivered":
            raise SystemExit(f"session.start {started.status}: {started.reason} {started.detail}")
        async for event in events:
            if isinstance(event, MessageReceived) and event.direction == "outbound":
                if (event.text or "").strip().lower() == "bye":
                    await bridge.send_message(session_id, "Goodbye!")
                    await bridge.end_session(session_id)
                else:
                    await bridge.send_message(session_id, f"You said: {event.text}")
            elif isinstance(event, SessionEnded):
                print(f"session ended: {event.reason}")
                return


if __name__ == "__main__":
    asyncio.run(main())
