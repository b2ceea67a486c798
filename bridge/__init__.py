"""genesys-bridge: hold Genesys Cloud web-messaging conversations from backend services over RabbitMQ."""

__version__ = "0.1.0"
