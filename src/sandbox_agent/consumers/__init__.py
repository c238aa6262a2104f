"""Consumers of the global log: named readers of ``EventStore.read_all`` that apply each event
exactly once, their checkpoint moving in the same transaction as their own writes
(``Consumer``), and a built-in one that publishes every event to NATS JetStream
(``sandbox_agent.consumers.nats``, with the ``nats`` extra). See docs/persistence.md."""

from sandbox_agent.consumers.consumer import (
    DEFAULT_BATCH,
    MAX_BATCH,
    Consumer,
    Handler,
    delete_consumer,
    list_consumers,
    reset_consumer,
)
from sandbox_agent.store.checkpoints import CheckpointRow, CheckpointTransaction

__all__ = [
    "DEFAULT_BATCH",
    "MAX_BATCH",
    "CheckpointRow",
    "CheckpointTransaction",
    "Consumer",
    "Handler",
    "delete_consumer",
    "list_consumers",
    "reset_consumer",
]
