"""Consumer checkpoints: the optional driver primitives behind ``sandbox_agent.consumers``.

A consumer reads the global log (``EventStore.read_all``) and remembers how far it got in a
checkpoint row of the store's own database, named after the consumer. Exactly-once rests on
one rule: the checkpoint moves in the same transaction as the consumer's own writes. So a
driver that supports consumers opens that transaction (``StorageDriver.checkpoint_transaction``)
and hands it to the handler as a ``CheckpointTransaction``:

- on entry it holds the consumer's row locked (created at position 0 when missing), so two
  processes running one consumer take turns and neither applies a batch the other applied;
- ``connection`` is the transaction's handle for the handler's own writes: a SQLAlchemy
  ``AsyncConnection`` for the SQL drivers, None for the memory driver, whose handlers record
  their in-process writes with ``on_commit`` (they run at the commit, with no await between
  them and the checkpoint's move);
- a clean exit writes ``position`` (set by ``advance``) and commits, then runs the
  ``on_commit`` callbacks; an error rolls everything back, the checkpoint included.

A driver without them raises ``NotSupported`` (the defaults in ``store/driver.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox_agent.store.errors import StoreConfigError

#: The longest consumer name (the checkpoint table's key is ``String(128)``).
MAX_CONSUMER_NAME = 128


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """A consumer's checkpoint: the last global position it applied, when it last moved, and
    how many stored events follow it (``lag``)."""

    name: str
    position: int
    updated_at: datetime
    lag: int


class CheckpointTransaction:
    """An open transaction of the store's database holding consumer ``name``'s checkpoint row
    locked. ``position`` starts at the stored checkpoint; ``advance`` moves it."""

    def __init__(self, name: str, position: int, connection: Any = None) -> None:
        self.name = name
        self.start = position
        self.position = position
        #: The driver's transaction for the handler's own writes (see the module's docstring).
        self.connection = connection
        self._callbacks: list[Callable[[], None]] = []

    def advance(self, position: int) -> None:
        """Set the checkpoint that the commit writes. It only moves forward."""
        if position < self.position:
            raise ValueError(
                f"consumer {self.name!r}: checkpoint {position} is behind {self.position}"
            )
        self.position = position

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` right after the commit (not at all after a rollback)."""
        self._callbacks.append(callback)

    def committed(self) -> None:
        """Called by the driver once the transaction committed."""
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def check_consumer_name(name: str) -> str:
    """``name`` if it can name a checkpoint, else ``StoreConfigError`` saying why."""
    if not isinstance(name, str) or not name or len(name) > MAX_CONSUMER_NAME:
        raise StoreConfigError(
            f"a consumer name is 1 to {MAX_CONSUMER_NAME} characters, got {name!r}"
        )
    if not name.isprintable():
        raise StoreConfigError(f"a consumer name must be printable text, got {name!r}")
    return name


def check_position(position: int) -> int:
    if isinstance(position, bool) or not isinstance(position, int) or position < 0:
        raise StoreConfigError(f"a checkpoint position is an integer >= 0, got {position!r}")
    return position
