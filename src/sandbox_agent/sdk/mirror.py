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

Remote sequences map onto local ones by a fixed ``offset`` (local = remote + offset). It is 0
until the session is restored on a new sandbox; then the new remote session's
``session.started`` (remote 1) is not copied (``session.resumed`` stands in for it, so
``session.started`` stays once in the stream) and remote ``k`` becomes local ``L + k - 1``,
where ``L`` is the sequence of the local ``session.resumed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

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
)

logger = logging.getLogger(__name__)

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
            self.task = asyncio.create_task(self.run(), name=f"mirror {self.session_id}")

    async def stop(self) -> None:
        task, self.task = self.task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        """Follow the remote stream until cancelled. Ends with ``RemoteSessionLost`` on a 404,
        ``MirrorConflict`` when another writer moved the local stream, ``SandboxAgentError``
        on any other error status."""
        try:
            state = await state_at(self.store, self.session_id)
        except SessionNotFound:
            raise MirrorConflict(self.session_id, "the local session was deleted") from None
        # The store is the one source of the mapping: a restore by another replica counts.
        self.offset = remote_offset(state)
        self.local = state.last_sequence
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
            head = await self.store.last_sequence(self.session_id)
            if head > self.local:
                reason = f"the local stream is at {head}, this mirror at {self.local}"
                stored = await self._stored_already(pending, reason)
                pending = pending[len(stored) :]
            else:
                drafts = [EventDraft.from_event(event) for event in pending]
                try:
                    stored = await self.store.append(
                        self.session_id, drafts, expected_sequence=self.local
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
            try:
                await snapshots.record(stored)
            except StoreError:
                logger.warning("mirror %s: snapshot failed", self.session_id, exc_info=True)

    async def _stored_already(
        self, pending: list[UniversalEvent], reason: str
    ) -> list[UniversalEvent]:
        """After a conflict: the leading events of ``pending`` that another mirror of the same
        stream stored already, at the same places. None of them: ``MirrorConflict``."""
        there = await self.store.read(self.session_id, after=self.local, limit=len(pending))
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
        while await self.store.last_sequence(self.session_id) < target:
            if asyncio.get_running_loop().time() >= deadline:
                return
            await asyncio.sleep(0.02)
