"""One server owns a store at a time: the ownership lock a server takes before it recovers.

A second server on the same store (an easy mistake: a second ``./scripts/main.sh``) would run
crash recovery into the live server's sessions. So a server claims the store first
(``EventStore.claim``) and refuses to start while another process holds it, naming the holder.
The lock dies with its process (a file lock, a database session), so a SIGKILLed server never
leaves a store locked. Other clients (the CLI, the SDK's mirror) do not claim: they share.

- SQLite: an exclusive ``flock`` on ``<database>.owner`` next to the file, which also holds the
  holder's pid, host and start time.
- Postgres: a session-level advisory lock keyed by the schema, held on a connection of its own
  whose ``application_name`` names the holder.
- Memory: nothing to share, no lock.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import json
import os
import socket
import zlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox_agent.store.errors import StoreError

#: The first half of the Postgres advisory lock key (the second is the schema's).
_PG_OWNER_KEY = 0x5A0A0E01


@dataclass(frozen=True)
class Owner:
    """The process that holds a store."""

    pid: int
    host: str
    since: str

    @classmethod
    def this_process(cls) -> Owner:
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return cls(pid=os.getpid(), host=socket.gethostname(), since=now)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.since}"


class StoreOwned(StoreError):
    """Another process owns the store (``owner``; None when it could not say who)."""

    def __init__(self, where: str, owner: Owner | None, rule: str = "one server per store") -> None:
        held = owner.describe() if owner is not None else "another process"
        super().__init__(f"the store {where} is owned by {held}: {rule}")
        self.owner = owner


class OwnershipLock(abc.ABC):
    """A driver's ownership lock. ``acquire`` returns None once held, else the holder."""

    @abc.abstractmethod
    async def acquire(self, owner: Owner) -> Owner | None: ...

    @abc.abstractmethod
    async def release(self) -> None: ...


class FileOwnership(OwnershipLock):
    """``flock`` on a file next to the database (released by the kernel when the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    async def acquire(self, owner: Owner) -> Owner | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_owner(fd)
            os.close(fd)
            return holder or Owner(pid=0, host="unknown", since="unknown")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(owner)).encode(), 0)
        self._fd = fd
        return None

    async def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock


def _read_owner(fd: int) -> Owner | None:
    try:
        return Owner(**json.loads(os.pread(fd, 4096, 0) or b"null"))
    except (TypeError, ValueError, OSError):
        return None


class AdvisoryOwnership(OwnershipLock):
    """A Postgres advisory lock held by a connection kept for it (``engine``: SQLAlchemy's).
    ``shared``: the lock's shared mode, which servers sharing the store (session leases,
    ``store/leases.py``) hold together and which excludes the exclusive one."""

    def __init__(self, engine: Any, schema: str, *, shared: bool = False) -> None:
        self.engine = engine
        self.key = zlib.crc32(schema.encode()) & 0x7FFFFFFF
        self.shared = shared
        self._conn: Any = None

    async def acquire(self, owner: Owner) -> Owner | None:
        conn = await self.engine.connect()
        name = f"sandbox-agent:{owner.pid}:{owner.since}:{owner.host}"[:63]
        await conn.exec_driver_sql(f"SET application_name = '{_quote(name)}'")
        mode = "_shared" if self.shared else ""
        got = await conn.exec_driver_sql(
            f"SELECT pg_try_advisory_lock{mode}({_PG_OWNER_KEY}, {self.key})"
        )
        if got.scalar():
            await conn.commit()
            self._conn = conn
            return None
        holder = await conn.exec_driver_sql(
            "SELECT a.application_name, a.client_hostname, a.client_addr FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND "
            f"l.classid = {_PG_OWNER_KEY} AND l.objid = {self.key} AND l.granted "
            "ORDER BY a.backend_start LIMIT 1"
        )
        row = holder.first()
        await conn.close()
        return _parse_application_name(row[0] if row else "")

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                mode = "_shared" if self.shared else ""
                await conn.exec_driver_sql(
                    f"SELECT pg_advisory_unlock{mode}({_PG_OWNER_KEY}, {self.key})"
                )
            with contextlib.suppress(Exception):
                await conn.close()


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _parse_application_name(name: str) -> Owner | None:
    prefix, _, rest = name.partition(":")
    if prefix != "sandbox-agent":
        return None
    pid, _, rest = rest.partition(":")
    # The time holds colons itself: the host is what follows its "Z:".
    since, _, host = rest.partition("Z:")
    try:
        return Owner(pid=int(pid), host=host or "unknown", since=since + "Z")
    except ValueError:
        return None
