"""Faults on demand, to test what a backend does when things break.

- ``FaultyStore(store)``: an ``EventStore`` over the same data as ``store`` that fails the
  calls you choose (``StoreUnavailable`` or any ``StoreError``), slows them down, or SIGKILLs
  the process right after a commit. It wraps the store's driver (``FaultyDriver``), so every
  ``EventStore`` behaviour above the driver (validation, retries, subscribe) is the real one.
- ``FaultyTransport()``: an httpx async transport that drops requests (before or after the
  server saw them) and cuts response bodies after N bytes or at the moment you say; pass it as
  ``SandboxAgent.connect(url, transport=...)``.
- ``CuttingProxy(port)``: a TCP proxy on 127.0.0.1 that resets every open connection on
  ``cut()``, and refuses new ones between ``down()`` and ``up()``, in front of a server or a
  database (Postgres, MySQL).
- ``small_disk(size)``: a tmpfs of that size mounted on a fresh directory (root or
  CAP_SYS_ADMIN; the test is skipped with the reason otherwise), and ``fill_disk(directory)``,
  which takes every free byte of it: a disk that fills up under a SQLite store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import httpx
import pytest

from sandbox_agent.store import (
    EventStore,
    SessionRecord,
    SessionStatus,
    StoreError,
    StoreUnavailable,
)
from sandbox_agent.store.driver import (
    EventRow,
    PositionedRow,
    SessionChange,
    SnapshotRow,
    StorageDriver,
    StoredRow,
)

__all__ = [
    "OPERATIONS",
    "CuttingProxy",
    "FaultyDriver",
    "FaultyStore",
    "FaultyTransport",
    "StoreCall",
    "fill_disk",
    "small_disk",
]

# -- the store ----------------------------------------------------------------------------------
#: The ``EventStore`` operations a fault can name, and the driver primitives that carry them out
#: (a primitive's own name works too: ``"select_events_by_id"``, the idempotent-retry lookup).
OPERATIONS: Mapping[str, tuple[str, ...]] = {
    "create_session": ("insert_session",),
    "get_session": ("select_session",),
    "list_sessions": ("select_sessions",),
    "update_session": ("update_session",),
    "delete_session": ("delete_session",),
    "append": ("insert_events",),
    "read": ("select_events",),
    "last_sequence": ("select_last_sequence",),
    "read_all": ("select_all",),
    "save_snapshot": ("insert_snapshot",),
    "load_snapshot": ("select_snapshot",),
    "snapshot_keys": ("select_snapshot_keys",),
    "delete_snapshots": ("delete_snapshots",),
}
PRIMITIVES = frozenset(p for primitives in OPERATIONS.values() for p in primitives) | {
    "select_events_by_id"
}


_WRITES = frozenset({"insert_events", "delete_session"})


class StoreCall(NamedTuple):
    """One call of a driver primitive through ``FaultyDriver``: its session (None for calls of
    no one session) and the fault applied to it (None, ``"fail"``, ``"fail_after_commit"``,
    ``"delay"``, ``"crash"``)."""

    primitive: str
    session_id: str | None
    fault: str | None


@dataclass
class _StoreRule:
    kind: str  # "fail", "delay", "crash"
    primitives: frozenset[str]
    skip: int  # matching calls to let through first
    times: int | None  # None: every matching call after the skipped ones
    session_id: str | None
    error: StoreError | type[StoreError] = StoreUnavailable
    after_commit: bool = False
    seconds: float = 0.0

    def take(self, primitive: str, session_id: str | None) -> bool:
        if primitive not in self.primitives or self.times == 0:
            return False
        if self.session_id is not None and session_id != self.session_id:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.times is not None:
            self.times -= 1
        return True


def _primitives(operation: str) -> frozenset[str]:
    if operation in OPERATIONS:
        return frozenset(OPERATIONS[operation])
    if operation in PRIMITIVES:
        return frozenset({operation})
    known = ", ".join(sorted(OPERATIONS) + sorted(PRIMITIVES))
    raise ValueError(f"no store operation {operation!r}; one of: {known}")


class FaultyDriver(StorageDriver):
    """A ``StorageDriver`` that delegates every primitive to ``inner`` and applies the faults
    planned with ``fail``, ``delay`` and ``crash_after`` (see ``FaultyStore``). ``calls``
    records every primitive called, in order."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.poll_interval = inner.poll_interval
        self.calls: list[StoreCall] = []
        self._rules: list[_StoreRule] = []
        self._wake: Callable[[str], None] = lambda session_id: None

    def attach(self, wake: Callable[[str], None]) -> None:
        self._wake = wake
        self.inner.attach(wake)

    # -- planning ---------------------------------------------------------------------------
    def fail(
        self,
        operation: str,
        *,
        times: int | None = 1,
        skip: int = 0,
        error: StoreError | type[StoreError] = StoreUnavailable,
        after_commit: bool = False,
        session_id: str | None = None,
    ) -> None:
        self._rules.append(
            _StoreRule("fail", _primitives(operation), skip, times, session_id, error, after_commit)
        )

    def delay(
        self,
        operation: str,
        seconds: float,
        *,
        times: int | None = None,
        skip: int = 0,
        session_id: str | None = None,
    ) -> None:
        rule = _StoreRule("delay", _primitives(operation), skip, times, session_id)
        rule.seconds = seconds
        self._rules.append(rule)

    def crash_after(self, operation: str, *, nth: int = 1, session_id: str | None = None) -> None:
        if nth < 1:
            raise ValueError("nth counts calls from 1")
        self._rules.append(_StoreRule("crash", _primitives(operation), nth - 1, 1, session_id))

    def clear(self) -> None:
        self._rules.clear()

    # -- applying ---------------------------------------------------------------------------
    async def _call(self, primitive: str, session_id: str | None, run: Callable[[], Any]) -> Any:
        rules = [rule for rule in self._rules if rule.take(primitive, session_id)]
        applied: list[str] = []
        for rule in rules:
            if rule.kind == "delay":
                applied.append("delay")
                await asyncio.sleep(rule.seconds)
        failure = next((rule for rule in rules if rule.kind == "fail"), None)
        crash = any(rule.kind == "crash" for rule in rules)
        if failure is not None and not failure.after_commit:
            self.calls.append(StoreCall(primitive, session_id, "fail"))
            raise _error(failure.error, primitive, session_id)
        result = await run()
        if crash:
            self.calls.append(StoreCall(primitive, session_id, "crash"))
            os.kill(os.getpid(), signal.SIGKILL)  # right after the commit: nothing after runs
        if failure is not None:
            self.calls.append(StoreCall(primitive, session_id, "fail_after_commit"))
            if session_id is not None and primitive in _WRITES:
                # It did commit: subscribers hear of it as from the database (the store wakes
                # them only after a write that returned).
                self._wake(session_id)
            raise _error(failure.error, primitive, session_id)
        self.calls.append(StoreCall(primitive, session_id, applied[0] if applied else None))
        return result

    # -- the primitives ---------------------------------------------------------------------
    async def insert_session(self, record: SessionRecord) -> None:
        await self._call("insert_session", record.id, lambda: self.inner.insert_session(record))

    async def select_session(self, session_id: str) -> SessionRecord | None:
        result: SessionRecord | None = await self._call(
            "select_session", session_id, lambda: self.inner.select_session(session_id)
        )
        return result

    async def select_sessions(
        self,
        *,
        limit: int,
        before: tuple[datetime, str] | None,
        status: SessionStatus | None,
        agent: str | None,
    ) -> list[SessionRecord]:
        result: list[SessionRecord] = await self._call(
            "select_sessions",
            None,
            lambda: self.inner.select_sessions(
                limit=limit, before=before, status=status, agent=agent
            ),
        )
        return result

    async def update_session(self, session_id: str, changes: Mapping[str, Any]) -> bool:
        result: bool = await self._call(
            "update_session", session_id, lambda: self.inner.update_session(session_id, changes)
        )
        return result

    async def delete_session(self, session_id: str) -> bool:
        result: bool = await self._call(
            "delete_session", session_id, lambda: self.inner.delete_session(session_id)
        )
        return result

    async def insert_events(
        self,
        session_id: str,
        rows: Sequence[EventRow],
        expected_sequence: int | None,
        change: SessionChange,
    ) -> int:
        result: int = await self._call(
            "insert_events",
            session_id,
            lambda: self.inner.insert_events(session_id, rows, expected_sequence, change),
        )
        return result

    async def select_events(
        self, session_id: str, after: int, limit: int | None
    ) -> Sequence[StoredRow]:
        result: Sequence[StoredRow] = await self._call(
            "select_events",
            session_id,
            lambda: self.inner.select_events(session_id, after, limit),
        )
        return result

    async def select_events_by_id(
        self, session_id: str, event_ids: Sequence[str]
    ) -> Sequence[StoredRow]:
        result: Sequence[StoredRow] = await self._call(
            "select_events_by_id",
            session_id,
            lambda: self.inner.select_events_by_id(session_id, event_ids),
        )
        return result

    async def select_last_sequence(self, session_id: str) -> int | None:
        result: int | None = await self._call(
            "select_last_sequence",
            session_id,
            lambda: self.inner.select_last_sequence(session_id),
        )
        return result

    async def select_all(self, after_position: int, limit: int) -> Sequence[PositionedRow]:
        result: Sequence[PositionedRow] = await self._call(
            "select_all", None, lambda: self.inner.select_all(after_position, limit)
        )
        return result

    async def insert_snapshot(
        self, session_id: str, sequence: int, version: int, state: str, created_at: datetime
    ) -> None:
        await self._call(
            "insert_snapshot",
            session_id,
            lambda: self.inner.insert_snapshot(session_id, sequence, version, state, created_at),
        )

    async def select_snapshot(
        self, session_id: str, at_or_before: int | None, version: int | None
    ) -> SnapshotRow | None:
        result: SnapshotRow | None = await self._call(
            "select_snapshot",
            session_id,
            lambda: self.inner.select_snapshot(session_id, at_or_before, version),
        )
        return result

    async def select_snapshot_keys(self, session_id: str) -> list[tuple[int, int]]:
        result: list[tuple[int, int]] = await self._call(
            "select_snapshot_keys", session_id, lambda: self.inner.select_snapshot_keys(session_id)
        )
        return result

    async def delete_snapshots(self, session_id: str, keys: Sequence[tuple[int, int]]) -> int:
        result: int = await self._call(
            "delete_snapshots", session_id, lambda: self.inner.delete_snapshots(session_id, keys)
        )
        return result

    async def close(self) -> None:
        """Nothing: the wrapped store closes its own driver (``FaultyStore.close``)."""


def _error(
    error: StoreError | type[StoreError], primitive: str, session_id: str | None
) -> StoreError:
    if isinstance(error, StoreError):
        return error
    where = f" (session {session_id!r})" if session_id is not None else ""
    return error(f"{primitive}{where} failed: a fault injected by FaultyStore")


class FaultyStore(EventStore):
    """An ``EventStore`` over ``store``'s data whose calls fail, slow down or crash the process
    as planned. Use it instead of ``store`` (it takes over the driver's wake-ups); closing it
    closes ``store``.

    Faults name the store operation (``append``, ``read``, ``read_all``, ``create_session``,
    ``get_session``, ``list_sessions``, ``update_session``, ``delete_session``,
    ``last_sequence``, ``save_snapshot``, ``load_snapshot``, ``snapshot_keys``,
    ``delete_snapshots``; see ``OPERATIONS``) or a driver primitive. Each applies to the
    matching calls after ``skip`` of them, ``times`` times (``None``: always), optionally of
    one ``session_id`` only::

        store = FaultyStore(await open_store("sqlite:///app.db"))
        store.fail("append", times=1)  # the next append raises StoreUnavailable, writes nothing
        store.fail("append", after_commit=True)  # written, then StoreUnavailable: a lost ack
        store.delay("read", seconds=0.2)  # every read 200 ms late
        store.crash_after("append", nth=3)  # SIGKILL this process once the 3rd append committed
        store.clear()

    ``calls`` records each primitive call (``StoreCall``: primitive, session id, fault).
    Operations above the driver (validation, idempotent retries, subscribe, fork) are
    ``EventStore``'s own, unchanged.
    """

    def __init__(self, store: EventStore) -> None:
        self.inner = store
        self.faults = FaultyDriver(store.driver)
        super().__init__(self.faults, sealer=store.sealer)

    @property
    def calls(self) -> list[StoreCall]:
        return self.faults.calls

    def fail(
        self,
        operation: str,
        *,
        times: int | None = 1,
        skip: int = 0,
        error: StoreError | type[StoreError] = StoreUnavailable,
        after_commit: bool = False,
        session_id: str | None = None,
    ) -> Self:
        """Raise ``error`` (a ``StoreError`` class or instance) from the matching calls, before
        the driver runs them (nothing written) or, with ``after_commit``, after it did."""
        self.faults.fail(
            operation,
            times=times,
            skip=skip,
            error=error,
            after_commit=after_commit,
            session_id=session_id,
        )
        return self

    def delay(
        self,
        operation: str,
        seconds: float,
        *,
        times: int | None = None,
        skip: int = 0,
        session_id: str | None = None,
    ) -> Self:
        """Sleep ``seconds`` before each matching call."""
        self.faults.delay(operation, seconds, times=times, skip=skip, session_id=session_id)
        return self

    def crash_after(self, operation: str, *, nth: int = 1, session_id: str | None = None) -> Self:
        """SIGKILL this process right after the ``nth`` matching call returned (for a write:
        once it committed), as a power cut would: nothing after it runs, nothing is closed."""
        self.faults.crash_after(operation, nth=nth, session_id=session_id)
        return self

    def clear(self) -> Self:
        """Forget the planned faults (``calls`` stays)."""
        self.faults.clear()
        return self

    async def close(self) -> None:
        await super().close()
        await self.inner.close()


# -- TCP ----------------------------------------------------------------------------------------
class CuttingProxy:
    """A TCP proxy from ``127.0.0.1:<port>`` (a free port, known after ``start()``) to
    ``target_host:target_port``; ``cut()`` resets every open connection (both sides), as a
    network failure would. New connections go through again after a cut; ``down()`` cuts and
    resets every new connection at once until ``up()``: the target is unreachable meanwhile.

    In front of a server: ``SandboxAgent.connect(proxy.url)``. In front of Postgres::

        async with CuttingProxy(5432) as proxy:
            store = await open_store(f"postgresql://postgres@127.0.0.1:{proxy.port}/test")
            ...
            proxy.cut()  # the store's connections die; what does your code do?
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        #: How many times ``cut()`` was called.
        self.cuts = 0
        #: How many connections were accepted.
        self.connections = 0
        #: Between ``down()`` and ``up()``: new connections are reset at once.
        self.is_down = False
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.is_down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            self._pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.transport.abort()

    def cut(self) -> int:
        """Reset every open connection; returns how many there were."""
        pairs = list(self._pairs)
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        self.cuts += 1
        return len(pairs)

    def down(self) -> int:
        """Cut every open connection and reset each new one until ``up()``; returns how many
        were open."""
        self.is_down = True
        return self.cut()

    def up(self) -> None:
        """Let new connections through again."""
        self.is_down = False

    async def close(self) -> None:
        """Cut everything and stop listening."""
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


# -- the disk -----------------------------------------------------------------------------------
@contextlib.contextmanager
def small_disk(size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` (``mount -o size=``) mounted on a fresh directory, unmounted and
    removed afterwards. Mounting needs root or CAP_SYS_ADMIN: without, the test is skipped
    with the reason."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command to mount a tmpfs")
    where = Path(tempfile.mkdtemp(prefix="sandbox-agent-disk-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        where.rmdir()
        reason = done.stderr.strip() or f"exit code {done.returncode}"
        pytest.skip(f"cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): {reason}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            where.rmdir()


def fill_disk(directory: Path) -> Path:
    """A file in ``directory`` that takes every free byte of its filesystem (delete it to free
    the space again)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):  # ENOSPC: no more of this size fits
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


# -- HTTP ---------------------------------------------------------------------------------------
@dataclass
class _Rule:
    """One planned fault for the requests that ``matches``."""

    kind: str  # "drop" (before sending), "lose" (after the server answered), "cut" (the body)
    matches: Callable[[httpx.Request], bool]
    times: int | None  # None: every matching request
    after_bytes: int = 0

    def take(self, request: httpx.Request) -> bool:
        if self.times == 0 or not self.matches(request):
            return False
        if self.times is not None:
            self.times -= 1
        return True


@dataclass(eq=False)
class _Open:
    """A response body being read, which ``cut_streams()`` can end at once."""

    request: httpx.Request
    cut: asyncio.Event = field(default_factory=asyncio.Event)


class FaultyTransport(httpx.AsyncBaseTransport):
    """An httpx async transport (over ``httpx.AsyncHTTPTransport()`` unless ``inner`` is given)
    with faults on demand. Requests are chosen by ``method`` and a regular expression searched
    in the URL path (``path``; any when None); ``times=None`` means every matching request.

    - ``drop(...)``: the request fails with ``httpx.ConnectError`` before it is sent;
    - ``lose_response(...)``: the request is sent and answered, then fails with
      ``httpx.ReadError``: the server did it, the client does not know;
    - ``cut_response(..., after_bytes=N)``: the body ends with ``httpx.ReadError`` after ``N``
      bytes (streams such as SSE included);
    - ``cut_streams()``: every body being read now ends with ``httpx.ReadError``, at once.

    ``requests`` records ``(method, path)`` of every request; ``faults`` each fault applied as
    ``(kind, method, path)``. ``clear()`` removes the planned faults.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.requests: list[tuple[str, str]] = []
        self.faults: list[tuple[str, str, str]] = []
        self._rules: list[_Rule] = []
        self._open: set[_Open] = set()

    # -- planning ---------------------------------------------------------------------------
    def drop(
        self, path: str | None = None, *, method: str | None = None, times: int | None = 1
    ) -> Self:
        """Fail matching requests with ``httpx.ConnectError``, unsent."""
        return self._plan("drop", path, method, times)

    def lose_response(
        self, path: str | None = None, *, method: str | None = None, times: int | None = 1
    ) -> Self:
        """Send matching requests, then fail them with ``httpx.ReadError``: the server acted
        on them, the client never sees the answer."""
        return self._plan("lose", path, method, times)

    def cut_response(
        self,
        path: str | None = None,
        *,
        after_bytes: int = 0,
        method: str | None = None,
        times: int | None = 1,
    ) -> Self:
        """End the bodies of matching responses with ``httpx.ReadError`` after ``after_bytes``
        bytes (the status and headers arrive)."""
        return self._plan("cut", path, method, times, after_bytes)

    def cut_streams(self) -> int:
        """End every response body being read now with ``httpx.ReadError`` (a follower's SSE
        stream, say), as a dropped connection would; returns how many there were."""
        for body in self._open:
            body.cut.set()
        return len(self._open)

    def clear(self) -> None:
        """Forget the planned faults (those already applied stay in ``faults``)."""
        self._rules.clear()

    def _plan(
        self, kind: str, path: str | None, method: str | None, times: int | None, after: int = 0
    ) -> Self:
        pattern = re.compile(path) if path is not None else None
        verb = method.upper() if method is not None else None

        def matches(request: httpx.Request) -> bool:
            if verb is not None and request.method != verb:
                return False
            return pattern is None or pattern.search(request.url.path) is not None

        self._rules.append(_Rule(kind, matches, times, after))
        return self

    def _fault(self, request: httpx.Request, kinds: tuple[str, ...]) -> _Rule | None:
        for rule in self._rules:
            if rule.kind in kinds and rule.take(request):
                self.faults.append((rule.kind, request.method, request.url.path))
                return rule
        return None

    # -- the transport ----------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        if self._fault(request, ("drop",)) is not None:
            raise httpx.ConnectError("connection dropped by FaultyTransport", request=request)
        response = await self.inner.handle_async_request(request)
        if self._fault(request, ("lose",)) is not None:
            await response.aclose()
            raise httpx.ReadError("response lost by FaultyTransport", request=request)
        rule = self._fault(request, ("cut",))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        body = _CutStream(self, request, response.stream, rule.after_bytes if rule else None)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=body,
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CutStream(httpx.AsyncByteStream):
    """A response body that ends with ``httpx.ReadError`` after ``limit`` bytes (never when
    None) or when its transport's ``cut_streams()`` is called."""

    def __init__(
        self,
        owner: FaultyTransport,
        request: httpx.Request,
        inner: httpx.AsyncByteStream,
        limit: int | None,
    ) -> None:
        self._owner = owner
        self._request = request
        self._inner = inner
        self._limit = limit

    def _cut(self) -> httpx.ReadError:
        return httpx.ReadError("response body cut by FaultyTransport", request=self._request)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        state = _Open(self._request)
        self._owner._open.add(state)
        chunks = self._inner.__aiter__()
        sent = 0
        try:
            while True:
                if self._limit is not None and sent >= self._limit:
                    raise self._cut()
                chunk = await self._next(chunks, state)
                if chunk is None:
                    return
                if self._limit is not None and sent + len(chunk) > self._limit:
                    chunk = chunk[: self._limit - sent]
                sent += len(chunk)
                if chunk:
                    yield chunk
        finally:
            self._owner._open.discard(state)

    async def _next(self, chunks: AsyncIterator[bytes], state: _Open) -> bytes | None:
        """The next chunk, None at the end; ``ReadError`` if ``cut_streams()`` comes first."""
        if state.cut.is_set():
            raise self._cut()
        reading = asyncio.ensure_future(anext(chunks, None))
        cutting = asyncio.ensure_future(state.cut.wait())
        try:
            await asyncio.wait({reading, cutting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cutting.cancel()
        if not reading.done():
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reading
            raise self._cut()
        return reading.result()

    async def aclose(self) -> None:
        await self._inner.aclose()
