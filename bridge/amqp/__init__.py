"""RabbitMQ: topology, the command intake and the event publisher. The only package importing aio-pika.

See docs/rabbitmq.md for the topology, routing keys, ack discipline and reconnect behaviour.
"""

from bridge.amqp.connection import BrokerLinks
from bridge.amqp.consumer import CommandIntake
from bridge.amqp.delivery import AmqpDelivery, DeadLetterSink
from bridge.amqp.publisher import AmqpEventPublisher
from bridge.amqp.topology import Topology, TopologyNames, declare_topology, intake_queue_arguments

__all__ = [
    "AmqpDelivery",
    "AmqpEventPublisher",
    "BrokerLinks",
    "CommandIntake",
    "DeadLetterSink",
    "Topology",
    "TopologyNames",
    "declare_topology",
    "intake_queue_arguments",
]
