"""``Consumer``: a named reader of the global log that applies each event exactly once.

A consumer reads ``EventStore.read_all`` in position order, a batch at a time, and hands each
batch to its handler inside a transaction of the store's own database that also moves the
consumer's checkpoint (``store/checkpoints.py``). The handler writes its own tables on
``txn.connection`` in that same transaction: both commit, or neither does. So a process
killed at any point, restarted, goes on after the last committed batch, and every event is
applied once. Two processes running one consumer take turns on its checkpoint's row lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from sandbox_agent.store import EventStore, PositionedEvent
from sandbox_agent.store.checkpoints import (
    CheckpointRow,
    CheckpointTransaction,
    check_consumer_name,
)
from sandbox_agent.store.errors import StoreConfigError

#: A handler: the batch (never empty, by position) and the transaction to write in.
Handler = Callable[[Sequence[PositionedEvent], CheckpointTransaction], Awaitable[None]]

#: The largest batch a consumer reads at once (``read_all``'s pages are bounded too).
MAX_BATCH = 10_000
DEFAULT_BATCH = 100
#: Seconds between two looks for new events of a caught-up ``run``.
DEFAULT_POLL_INTERVAL = 0.2


class Consumer:
    """Consumer ``name`` of ``store``, applying batches of at most ``batch_size`` events with
    ``handler``. ``step`` applies one batch; ``run_until_caught_up`` applies them all; ``run``
    goes on until ``stop`` is set, looking for new events every ``poll_interval`` seconds."""

    def __init__(
        self,
        store: EventStore,
        name: str,
        handler: Handler,
        *,
        batch_size: int = DEFAULT_BATCH,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise StoreConfigError(f"batch_size must be 1 to {MAX_BATCH}, got {batch_size}")
        if poll_interval <= 0:
            raise StoreConfigError(f"poll_interval must be > 0, got {poll_interval}")
        self.store = store
        self.name = check_consumer_name(name)
        self.handler = handler
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        #: The checkpoint as this process last committed or saw it (None: not read yet).
        self.position: int | None = None
        self.applied = 0
        self._caught_up = False  # the last batch was short: look before locking

    async def step(self) -> int:
        """Apply the next batch; how many events it held (0: caught up, nothing written)."""
        # After a short batch (caught up), look for new events before taking the write lock
        # (SQLite) or a row lock; after a full one there are likely more.
        if self._caught_up and not await self.store.read_all(self.position or 0, 1):
            return 0
        async with self.store.driver.checkpoint_transaction(self.name) as txn:
            # Read after the locked checkpoint, not self.position: another process running
            # this consumer may have moved it.
            batch = await self.store.read_all(txn.position, self.batch_size)
            if batch:
                await self.handler(batch, txn)
                txn.advance(batch[-1].position)
        self.position = txn.position
        self.applied += len(batch)
        self._caught_up = len(batch) < self.batch_size
        return len(batch)

    async def run_until_caught_up(self) -> int:
        """Apply batches until none is left; how many events in all."""
        total = 0
        while count := await self.step():
            total += count
        return total

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Apply batches as events arrive, until ``stop`` is set (or the task is cancelled:
        the batch in flight then rolls back)."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            if await self.step():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)


async def list_consumers(store: EventStore) -> list[CheckpointRow]:
    """Every consumer of ``store`` with its checkpoint and lag, by name."""
    return await store.driver.select_checkpoints()


async def reset_consumer(store: EventStore, name: str, position: int = 0) -> bool:
    """Move consumer ``name``'s checkpoint to ``position`` (made when missing): its handler
    applies the events after it again. Whether the consumer existed."""
    return await store.driver.write_checkpoint(check_consumer_name(name), position)


async def delete_consumer(store: EventStore, name: str) -> bool:
    """Forget consumer ``name``'s checkpoint; whether there was one."""
    return await store.driver.write_checkpoint(check_consumer_name(name), None)
