"""Session leases: several servers on one shared store, each running the sessions it leases.

By default one server owns a whole store (``store/ownership.py``). A driver whose database
several hosts reach (Postgres) can instead lease each session to the server that runs it
(``EventStore.share``): a lease row per session names its holder (a server id, pid, host and
start time) and when the lease expires. The rules, all decided by the database's clock:

- ``acquire`` is one compare-and-set: it takes the lease when there is none, when it expired,
  or when the caller holds it already (then it is renewed); else it answers the live holder's
  lease and changes nothing. Two servers racing for an expired lease: one wins.
- The holder renews all its leases in one statement every third of the lease length
  (``heartbeat_seconds``); a lease it no longer holds (another server took it over after it
  expired, say after a long stall) is not renewed, and the server stops serving that session.
- A clean stop releases the leases (they expire at once), so another server may take the
  sessions over; a crashed server's leases expire ``seconds`` after their last renewal.
- A session's crash recovery runs only in the server that holds its lease (``sessions/``).

Servers that share a store also take the store-wide lock in its shared mode, so a server that
owns the store alone and servers that share it never run on one store at the same time.
"""

from __future__ import annotations

import abc
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sandbox_agent.store.errors import StoreError
from sandbox_agent.store.ownership import OwnershipLock

#: The bounds of a lease's length in seconds (``--lease-seconds``): below a second a heartbeat
#: (a third of it) would be a busy loop of writes; a day is the most a crash may hold a session.
MIN_LEASE_SECONDS = 1.0
MAX_LEASE_SECONDS = 86_400.0
DEFAULT_LEASE_SECONDS = 30.0
#: Expired leases taken over per heartbeat by one server (the rest at the next heartbeat).
TAKEOVER_BATCH = 100


@dataclass(frozen=True)
class LeaseHolder:
    """A server that holds leases: ``server_id`` is unique per server process."""

    server_id: str
    pid: int
    host: str
    since: datetime = field(compare=False)

    @classmethod
    def this_server(cls) -> LeaseHolder:
        return cls(
            server_id=uuid.uuid4().hex[:16],
            pid=os.getpid(),
            host=socket.gethostname(),
            since=datetime.now(UTC).replace(microsecond=0),
        )

    def describe(self) -> str:
        since = self.since.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return f"server {self.server_id} (pid {self.pid} on {self.host}, since {since})"


@dataclass(frozen=True)
class Lease:
    """A session's lease as stored: who holds it and until when (the database's clock)."""

    session_id: str
    holder: LeaseHolder
    expires_at: datetime


class SessionOwned(StoreError):
    """Another live server holds the session's lease (``lease``): it runs the session."""

    def __init__(self, lease: Lease) -> None:
        until = lease.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        super().__init__(
            f"session {lease.session_id!r} is run by {lease.holder.describe()}; its lease "
            f"expires at {until} unless that server renews it"
        )
        self.session_id = lease.session_id
        self.lease = lease


class LeaseDriver(abc.ABC):
    """The optional driver capability behind leases (``StorageDriver.session_leases``)."""

    @abc.abstractmethod
    async def acquire(self, session_id: str, holder: LeaseHolder, seconds: float) -> Lease:
        """Compare-and-set: the lease becomes ``holder``'s for ``seconds`` when there is none,
        it expired or ``holder`` has it already. Returns the lease as it then is (another
        holder's when it was live: nothing changed)."""

    @abc.abstractmethod
    async def renew(self, server_id: str, seconds: float) -> set[str]:
        """Extend every lease of ``server_id`` to ``seconds`` from now; the session ids."""

    @abc.abstractmethod
    async def release(self, server_id: str, session_ids: Sequence[str] | None) -> None:
        """Let these leases of ``server_id`` (all when None) expire now."""

    @abc.abstractmethod
    async def forget(self, server_id: str, session_id: str) -> None:
        """Remove the lease row of a session ``server_id`` holds (the session is deleted)."""

    @abc.abstractmethod
    async def expired(self, limit: int) -> list[str]:
        """Active sessions whose lease has expired (at most ``limit``, oldest first)."""

    @abc.abstractmethod
    def ownership_lock(self) -> OwnershipLock:
        """The store-wide lock in its shared mode (sharing servers hold it together; a server
        that owns the store alone cannot take it while they do, nor they while it does)."""


class SessionLeases:
    """The leases of one server (``holder``), each ``seconds`` long: what the engine uses."""

    def __init__(
        self, driver: LeaseDriver, seconds: float, holder: LeaseHolder | None = None
    ) -> None:
        check_lease_seconds(seconds)
        self.driver = driver
        self.seconds = seconds
        self.holder = holder or LeaseHolder.this_server()

    @property
    def heartbeat_seconds(self) -> float:
        """How often the holder renews: a third of the length, so two renewals may fail in a
        row (a store blip) before the lease expires."""
        return self.seconds / 3

    async def acquire(self, session_id: str) -> Lease:
        """Take (or renew) the session's lease; ``SessionOwned`` while another server's is live."""
        lease = await self.driver.acquire(session_id, self.holder, self.seconds)
        if lease.holder.server_id != self.holder.server_id:
            raise SessionOwned(lease)
        return lease

    async def renew(self) -> set[str]:
        """Renew every lease held; the ids of the sessions still held."""
        return await self.driver.renew(self.holder.server_id, self.seconds)

    async def release(self, session_id: str) -> None:
        await self.driver.release(self.holder.server_id, [session_id])

    async def release_all(self) -> None:
        await self.driver.release(self.holder.server_id, None)

    async def forget(self, session_id: str) -> None:
        await self.driver.forget(self.holder.server_id, session_id)

    async def expired(self, limit: int = TAKEOVER_BATCH) -> list[str]:
        return await self.driver.expired(limit)


def check_lease_seconds(seconds: float) -> None:
    """``ValueError`` for a lease length outside ``[MIN_LEASE_SECONDS, MAX_LEASE_SECONDS]``."""
    if not MIN_LEASE_SECONDS <= seconds <= MAX_LEASE_SECONDS:
        raise ValueError(
            f"a lease lasts {MIN_LEASE_SECONDS:g} to {MAX_LEASE_SECONDS:g} seconds, got {seconds:g}"
        )
