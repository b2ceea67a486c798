"""Partitioned session ownership: how replicas share sessions over RabbitMQ (docs/scaling.md)."""
