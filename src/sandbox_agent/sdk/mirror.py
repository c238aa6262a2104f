"""The persistence mirror: the server's stream of one session, copied into the local store.

The mirror follows ``GET /v1/sessions/{id}/events/sse`` with ``Last-Event-ID`` and appends
every event to the local store under the same session id, with the server's ``event_id`` as
the idempotency key and ``expected_sequence`` set to where this mirror left the local stream.
After a dropped connection it reconnects with capped exponential backoff and resumes after the
last event it stored, so the local stream is the server's stream with no gap and no duplicate.
What has arrived is appended as one batch.

One writer per session: a second mirror of the same session (another replica, another SDK
instance) has its append refused by ``expected_sequence``. It says so (a warning in the log,
``refused`` and ``standby`` on the mirror) and becomes a standby: from then on it waits up to
``STANDBY_GRACE`` for the writer to store each batch and only writes what the writer did not
(so it takes over if the writer dies), never duplicating an event. Events another mirror stored
at the same places count as stored; any other difference is a ``MirrorConflict``: a writer with
another view of the stream.

The local store's transient errors (``TRANSIENT_STORE_ERRORS``: ``StoreUnavailable``, the
database unreachable for a moment) are retried with exponential backoff, each failing call up
to ``STORE_RETRIES`` times (a warning in the log for each); the events keep arriving meanwhile
and are appended once the store answers (an append that committed before its error is found
stored by the retry: the store's idempotency). After the last retry the mirror stops with
``LocalStoreUnavailable``. Whenever it stops on an error, it logs why and keeps the reason in
``stop_reason``; the session's ``prompt``/``wait``/``events`` raise the error after yielding what
was stored.

Remote sequences map onto local ones by a fixed ``offset`` (local = remote + offset). It is 0
until the session is restored on a new sandbox; then the new remote session's
``session.started`` (remote 1) is not copied (``session.resumed`` stands in for it, so
``session.started`` stays once in the stream) and remote ``k`` becomes local ``L + k - 1``,
where ``L`` is the sequence of the local ``session.resumed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
from httpx_sse import SSEError, aconnect_sse

from sandbox_agent.events import EventDraft, UniversalEvent
from sandbox_agent.replay import SessionState, SnapshotWriter, state_at
from sandbox_agent.sdk.errors import MirrorConflict, SandboxAgentError
from sandbox_agent.store import (
    EventStore,
    IdempotencyConflict,
    SequenceConflict,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: First and largest wait between reconnects, in seconds.
BACKOFF_START = 0.05
BACKOFF_MAX = 5.0
#: Most events appended in one batch, and most events parsed ahead of the appender.
BATCH_SIZE = 500
QUEUE_SIZE = 2000
#: Connect/write timeouts of the stream; reads have none (the server pings every 15 s).
STREAM_TIMEOUT = httpx.Timeout(10.0, read=None)
#: Seconds a standby mirror waits for the writer to store a batch before it writes it itself.
STANDBY_GRACE = 2.0
#: Errors of the local store that the mirror retries (the database unreachable for a moment).
TRANSIENT_STORE_ERRORS: tuple[type[StoreError], ...] = (StoreUnavailable,)
#: Retries of one failing store call, and the first and largest wait between two of them, in
#: seconds: 0.05 doubling to 5, about 21 s in all, enough for a database restart or failover.
STORE_RETRIES = 10
STORE_RETRY_START = 0.05
STORE_RETRY_MAX = 5.0


def remote_offset(state: SessionState) -> int:
    """local sequence - remote sequence for a stored stream: set by the newest restore."""
    for resume in reversed(state.resumes):
        if resume.reason == "sandbox_replaced":
            return resume.sequence - 1
    return 0


class RemoteSessionLost(Exception):
    """The server no longer knows the session (404): the sandbox was replaced or wiped."""


class _Transient(Exception):
    """A server error worth retrying (5xx while it starts or stops)."""


class LocalStoreUnavailable(SandboxAgentError):
    """The mirror stopped: the local store kept failing (a ``TRANSIENT_STORE_ERRORS`` error on
    every one of ``attempts`` tries of ``operation``; the last error is ``__cause__``). What
    was stored stays; the next ``send``/``prompt`` or ``resume_session`` mirrors on from it."""

    def __init__(self, session_id: str, operation: str, attempts: int, error: Exception) -> None:
        detail = (
            f"the mirror of session {session_id!r} stopped: the local store failed {attempts} "
            f"times in a row ({operation}; last error: {error}); what was stored stays, and "
            "the next send(), prompt() or resume_session() mirrors on from there"
        )
        problem = SandboxAgentError.of(
            "local_store_unavailable", 503, detail, sessionId=session_id
        ).problem
        super().__init__(503, problem)
        self.session_id = session_id
        self.operation = operation
        self.attempts = attempts


class TurnWatch:
    """Whether a turn is open in the local stream (a ``turn.started`` without its
    ``turn.ended``, and no ``session.ended`` or sandbox replacement since), as of the newest
    local event seen (``sequence``). Fed by the mirror, the session's reads and its prompts;
    newer news wins, whatever order the sources report in."""

    def __init__(self, *, sequence: int = 0, open: bool = False) -> None:
        self.sequence = sequence
        self.open = open

    def see(self, events: list[UniversalEvent]) -> None:
        for event in events:
            if event.sequence <= self.sequence:
                continue
            self.sequence = event.sequence
            if event.type == "turn.started":
                self.open = True
            elif event.type in ("turn.ended", "session.ended") or (
                event.type == "session.resumed" and event.data.get("reason") == "sandbox_replaced"
            ):
                self.open = False

    def load(self, state: SessionState) -> None:
        """The replayed local stream (ignored when older than what was seen)."""
        if state.last_sequence >= self.sequence:
            self.sequence = state.last_sequence
            self.open = turn_open(state)

    def sent(self, after: int) -> None:
        """A prompt was accepted while the local stream stood at ``after``: its turn runs,
        unless newer local events were seen already (they tell)."""
        if after >= self.sequence:
            self.sequence = after
            self.open = True


def turn_open(state: SessionState) -> bool:
    """The replayed stream has an open turn (``TurnWatch``'s rule)."""
    turn = state.open_turn
    started = turn.started_sequence if turn is not None else None
    if started is None or state.ended is not None:
        return False
    # A turn that ran on a lost sandbox never ends: the restore closed it.
    return not any(r.reason == "sandbox_replaced" and r.sequence > started for r in state.resumes)


class Mirror:
    """Copies one session's remote stream into ``store``. ``start()`` runs it as a task."""

    def __init__(
        self, http: httpx.AsyncClient, store: EventStore, session_id: str, *, offset: int
    ) -> None:
        self.http = http
        self.store = store
        self.session_id = session_id
        self.offset = offset
        self.task: asyncio.Task[None] | None = None
        #: Events this mirror's appends stored (an append that finds its events stored by
        #: another mirror a moment earlier also counts them: the store's idempotency).
        self.appended = 0
        #: Events this mirror wrote as a standby, because the writer had not within the grace.
        self.took_over = 0
        self.reconnects = 0
        #: The last local sequence this mirror stored or found stored.
        self.local = 0
        #: Appends refused because another mirror had stored the events.
        self.refused = 0
        #: Another mirror writes this session; this one writes only what that one does not.
        self.standby = False
        #: Store calls retried after a transient error of the local store.
        self.store_retries = 0
        #: Why the mirror is not running, in a sentence (None while it runs, or before its
        #: first start); also logged when it stops on an error.
        self.stop_reason: str | None = None
        #: Whether a turn is open in the local stream (``Session.turn_running``).
        self.turn = TurnWatch()

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def error(self) -> BaseException | None:
        """Why the mirror stopped (None while it runs or after a clean stop)."""
        if self.task is None or not self.task.done() or self.task.cancelled():
            return None
        return self.task.exception()

    def start(self) -> None:
        if not self.running:
            self.stop_reason = None
            self.task = asyncio.create_task(self.run(), name=f"mirror {self.session_id}")
            self.task.add_done_callback(self._stopped)

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            self.stop_reason = "stopped by the SDK (the session was closed or is being restored)"
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, RemoteSessionLost):
            self.stop_reason = (
                "the server lost the session (404: a new sandbox or a wiped server store); "
                "the next prompt or resume_session() restores it"
            )
        elif error is not None:
            self.stop_reason = str(error) or repr(error)
        else:
            self.stop_reason = "the mirror ended"
        # A lost session is an expected turn of events (the restore handles it).
        level = logging.WARNING if isinstance(error, RemoteSessionLost) else logging.ERROR
        logger.log(level, "mirror %s stopped: %s", self.session_id, self.stop_reason)

    async def _store(
        self, operation: str, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> T:
        """``await call(*args, **kwargs)``, a local store call, retried with backoff after a
        ``TRANSIENT_STORE_ERRORS`` error; ``LocalStoreUnavailable`` after ``STORE_RETRIES``."""
        delay = STORE_RETRY_START
        retry = 0
        while True:
            try:
                return await call(*args, **kwargs)
            except TRANSIENT_STORE_ERRORS as exc:
                if retry >= STORE_RETRIES:
                    raise LocalStoreUnavailable(self.session_id, operation, retry + 1, exc) from exc
                retry += 1
                self.store_retries += 1
                logger.warning(
                    "mirror %s: the local store failed (%s: %s); retry %d of %d in %.2f s",
                    self.session_id,
                    operation,
                    exc,
                    retry,
                    STORE_RETRIES,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX)

    async def run(self) -> None:
        """Follow the remote stream until cancelled. Ends with ``RemoteSessionLost`` on a 404,
        ``MirrorConflict`` when another writer moved the local stream, ``LocalStoreUnavailable``
        when the local store kept failing, ``SandboxAgentError`` on any other error status."""
        try:
            state = await self._store("read", state_at, self.store, self.session_id)
        except SessionNotFound:
            raise MirrorConflict(self.session_id, "the local session was deleted") from None
        # The store is the one source of the mapping: a restore by another replica counts.
        self.offset = remote_offset(state)
        self.local = state.last_sequence
        self.turn.load(state)
        # Whoever writes a stream writes its snapshots, so that state_at stays cheap.
        snapshots = SnapshotWriter(self.store, state)
        delay = BACKOFF_START
        while True:
            before = self.local
            try:
                await self._follow(snapshots)
            except (httpx.TransportError, SSEError, _Transient) as exc:
                logger.debug("mirror %s: stream dropped (%r)", self.session_id, exc)
            if self.local > before:
                delay = BACKOFF_START
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _follow(self, snapshots: SnapshotWriter) -> None:
        """One connection: a reader task parses the stream into a queue, and everything queued
        is appended as one batch (so a mirror that catches up writes big batches)."""
        queue: asyncio.Queue[UniversalEvent | BaseException | None] = asyncio.Queue(QUEUE_SIZE)
        reader = asyncio.create_task(self._read_into(queue, self.local - self.offset))
        try:
            while True:
                batch = [await queue.get()]
                while len(batch) < BATCH_SIZE and not queue.empty():
                    batch.append(queue.get_nowait())
                events = [item for item in batch if isinstance(item, UniversalEvent)]
                if events:
                    await self._append(events, snapshots)
                end = batch[-1]
                if isinstance(end, BaseException):
                    raise end
                if end is None:
                    return  # the server ended the stream
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read_into(
        self, queue: asyncio.Queue[UniversalEvent | BaseException | None], after: int
    ) -> None:
        """Queue the events of the stream after remote ``after``, then None at its end or the
        error that ended it."""
        try:
            async for event in self._remote_events(after):
                await queue.put(event)
        except Exception as exc:  # handed to the appender, which raises it in order
            await queue.put(exc)
        else:
            await queue.put(None)

    async def _remote_events(self, after: int) -> AsyncIterator[UniversalEvent]:
        path = f"/v1/sessions/{self.session_id}/events/sse"
        async with aconnect_sse(
            self.http,
            "GET",
            path,
            params={"include_raw": "true"},
            headers={"Last-Event-ID": str(after)},
            timeout=STREAM_TIMEOUT,
        ) as source:
            response = source.response
            if response.status_code == 404:
                raise RemoteSessionLost(self.session_id)
            if response.status_code >= 500:
                raise _Transient(response.status_code)
            if response.status_code >= 400:
                await response.aread()
                raise SandboxAgentError.from_response(response)
            async for sse in source.aiter_sse():
                if sse.event == "error":
                    # The server's stream failed (its store did): reconnect after the last event.
                    raise _Transient(int(json.loads(sse.data).get("status", 503)))
                if sse.data:
                    yield UniversalEvent.model_validate_json(sse.data)

    async def _append(self, events: list[UniversalEvent], snapshots: SnapshotWriter) -> None:
        """Store the remote ``events`` after ``self.local``, as one batch."""
        pending = [e for e in events if e.sequence + self.offset > self.local]
        for n, event in enumerate(pending, start=1):
            if event.sequence + self.offset != self.local + n:
                raise SandboxAgentError.of(
                    "mirror_gap",
                    502,
                    f"session {self.session_id!r}: the server sent sequence {event.sequence} "
                    f"where {self.local + n - self.offset} was due",
                )
        while pending:
            if self.standby:
                # Also for the rest of a batch whose start was refused just now: the writer
                # stores it (a standby that went on would write what the writer writes next).
                await self._wait_for_writer(self.local + len(pending))
            # A stream ahead of this mirror was written by another one; an append would only
            # find its events there (the store's idempotency), so check first.
            head = await self._store("last_sequence", self.store.last_sequence, self.session_id)
            if head > self.local:
                reason = f"the local stream is at {head}, this mirror at {self.local}"
                stored = await self._stored_already(pending, reason)
                pending = pending[len(stored) :]
            else:
                drafts = [EventDraft.from_event(event) for event in pending]
                try:
                    # A retry of an append that committed before its error finds its events
                    # stored: the store returns them (idempotent by event_id).
                    stored = await self._store(
                        "append",
                        self.store.append,
                        self.session_id,
                        drafts,
                        expected_sequence=self.local,
                    )
                except (SequenceConflict, IdempotencyConflict) as exc:
                    stored = await self._stored_already(pending, str(exc))
                    pending = pending[len(stored) :]
                except SessionNotFound:
                    raise MirrorConflict(self.session_id, "the local session was deleted") from None
                else:
                    pending = []
                    self.appended += len(stored)
                    if self.standby:
                        self.took_over += len(stored)
            self.local += len(stored)
            self.turn.see(stored)
            try:
                await snapshots.record(stored)
            except StoreError:
                logger.warning("mirror %s: snapshot failed", self.session_id, exc_info=True)

    async def _stored_already(
        self, pending: list[UniversalEvent], reason: str
    ) -> list[UniversalEvent]:
        """After a conflict: the leading events of ``pending`` that another mirror of the same
        stream stored already, at the same places. None of them: ``MirrorConflict``."""
        there = await self._store(
            "read", self.store.read, self.session_id, after=self.local, limit=len(pending)
        )
        same = 0
        while same < len(there) and there[same].event_id == pending[same].event_id:
            same += 1
        if same == 0:
            raise MirrorConflict(
                self.session_id,
                f"another writer changed the local copy of session {self.session_id!r} "
                f"(a second mirror with another view of the stream?): {reason}",
            )
        self.refused += 1
        if not self.standby:
            self.standby = True
            logger.warning(
                "mirror %s: append refused (%s): another mirror writes this session; this one "
                "stands by and writes only what that one does not",
                self.session_id,
                reason,
            )
        return there[:same]

    async def _wait_for_writer(self, target: int) -> None:
        """Standby: give the writer ``STANDBY_GRACE`` to store up to ``target``."""
        deadline = asyncio.get_running_loop().time() + STANDBY_GRACE
        while (
            await self._store("last_sequence", self.store.last_sequence, self.session_id) < target
        ):
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(0.02)
