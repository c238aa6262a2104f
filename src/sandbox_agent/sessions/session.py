"""One session as the engine runs it: its append pipeline, its live state, its agent, and the
prompts queued behind its running turn.

The pipeline is the only way into the store: ``drafts -> Normaliser.normalise ->
store.append(expected_sequence=<last seen>)``, for the adapter's drafts (the adapter's sink) and
the session layer's own alike, serialised by one lock. The live state is the replay reducer
(``Replayer``) fed with exactly what each append stored; nothing else keeps a copy. It is a
*working* replayer: it keeps what the session needs to act (status, the open turn, pending
requests, the queue, counters), not the history, so a loaded session's memory does not grow with
its stream; whatever needs the whole state (``full_state``, restore text, snapshots) folds it
from the store. A snapshot is written every ``snapshot_every`` events.

Control operations (a message, cancel, terminate, a HITL reply) take the session's control lock,
so one turn is admitted at a time and a cancel never races a message. The adapter's background
output only takes the append lock. A prompt that arrives while a turn runs is stored as
``prompt.queued``; the append that ends the turn starts a task (``_drain``) that starts the
queued prompts in order, each after the turn before it. The queue is part of the reducer's
state, so it survives a restart like everything else.

Turns are bounded (``TurnLimits``): a cancel waits ``cancel_grace`` seconds for the agent, then
stops it; with an ``idle_timeout`` a task (``_idle_watcher``) ends a turn whose agent has said
nothing for that long. Either way the agent is stopped quietly (what it says while it stops is
dropped) and the next prompt starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox_agent.agents import (
    AgentAdapter,
    AgentSessionConfig,
    AgentSettings,
    Attachment,
    PermissionReply,
    create_adapter,
    turn_ended_draft,
)
from sandbox_agent.events import (
    ErrorData,
    EventDraft,
    PermissionData,
    PromptDequeuedData,
    PromptQueuedData,
    SessionEndedData,
    SessionResumedData,
    UniversalEvent,
    new_event_id,
    utc_now,
)
from sandbox_agent.replay import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_EVENTS,
    Replayer,
    SessionState,
    replayed_entries,
    restore_text,
    state_at,
    write_snapshot_if_due,
)
from sandbox_agent.replay.snapshots import load_state, snapshot_due
from sandbox_agent.sessions.config import TurnLimits
from sandbox_agent.sessions.drafts import (
    client_draft,
    closing_drafts,
    daemon_draft,
    dequeued_drafts,
    prompt_drafts,
    store_failure_drafts,
)
from sandbox_agent.sessions.errors import (
    AgentProcessExited,
    InvalidSessionRequest,
    QueueFull,
    RequestNotFound,
    TurnInProgress,
)
from sandbox_agent.sessions.fork import FORK_REASON, fork_origin
from sandbox_agent.sessions.normaliser import Normaliser
from sandbox_agent.sessions.paths import resolve_attachments
from sandbox_agent.sessions.store_retry import STORE_RETRY, StoreRetry
from sandbox_agent.store import (
    EventStore,
    SessionRecord,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
)

logger = logging.getLogger(__name__)

#: Whole states folded from the store at once, by default (``full_state``, the replay text of a
#: restore, a due snapshot): each holds the session's whole history in memory while it runs, and
#: the allocator keeps the peak it once took, so more at once would make the server's resident
#: set grow with its sessions' length. The engine shares one limit among all its sessions.
STATE_FOLDS = 2
#: Events per page of those folds and of a load's: a page of 1,000 decoded events (about 2 MB)
#: would cost more memory than most states (docs/performance.md, "Session 10: the soak's memory").
FOLD_PAGE = 250
#: Prompts that may wait behind a running turn; one more is refused (``QueueFull``).
MAX_QUEUED = 100


class LiveSession:
    """A session the engine holds: build it with ``load`` (from the store)."""

    #: How its appends ride out a store that cannot be reached (``StoreRetry``).
    store_retry: StoreRetry = STORE_RETRY
    #: Why the store failed this session's last append (``StoreUnavailable``); None once an
    #: append succeeds again.
    store_failure: StoreUnavailable | None = None
    #: The normaliser and the live state may be ahead of the store (an append gave up).
    _stale = False
    #: Records the end of the turn once the store answers again (``_recover_store``).
    _store_recovery: asyncio.Task[None] | None = None

    def __init__(
        self,
        store: EventStore,
        record: SessionRecord,
        normaliser: Normaliser,
        replayer: Replayer,
        *,
        settings: AgentSettings,
        root: str | None,
        snapshot_every: int,
        turn_limits: TurnLimits | None = None,
        folds: asyncio.Semaphore | None = None,
    ) -> None:
        self.id = record.id
        self.record = record
        self._store = store
        self._normaliser = normaliser
        self._replayer = replayer
        self._settings = settings
        self._root = root
        self._snapshot_every = snapshot_every
        self._folds = folds if folds is not None else asyncio.Semaphore(STATE_FOLDS)
        self._replay_max_events = DEFAULT_MAX_EVENTS
        self._replay_max_chars = DEFAULT_MAX_CHARS
        self._append_lock = asyncio.Lock()
        #: One control operation (message, cancel, terminate, reply) at a time.
        self.control = asyncio.Lock()
        self.adapter: AgentAdapter | None = None
        #: The replay text owed to the next prompt: the agent could not resume natively.
        self._restore: str | None = None
        #: How many entries of the session that text holds (``session.resumed``).
        self._restore_entries = 0
        #: Starts queued prompts (``_after_append``); ``close`` stops it for good.
        self._drain_task: asyncio.Task[None] | None = None
        self._drain_wanted = False
        self._closed = False
        self._limits = turn_limits or TurnLimits()
        #: ``loop.time()`` of the agent's last word (or of the turn's start): the idle bound's.
        self._agent_heard = 0.0
        #: Ends a turn the agent went quiet in (``TurnLimits.idle_timeout``).
        self._idle_watch: asyncio.Task[None] | None = None
        #: The agent is being stopped in the middle of its turn, which we end: what it says
        #: meanwhile (a failed prompt's error, say) is dropped.
        self._muted = False
        origin = fork_origin(record)
        #: A fork whose stream is still the bare copy: its first agent start continues it
        #: (``_continue_fork``).
        self._fork_pending = origin is not None and replayer.last_sequence == origin["sequence"]
        #: How the fork continued (``_continue_fork``), once it did here.
        self.fork_resumed: SessionResumedData | None = None

    @classmethod
    async def load(
        cls,
        store: EventStore,
        record: SessionRecord,
        *,
        settings: AgentSettings,
        root: str | None = None,
        snapshot_every: int = 1000,
        turn_limits: TurnLimits | None = None,
        folds: asyncio.Semaphore | None = None,
    ) -> LiveSession:
        """The session as its stored stream leaves it (newest snapshot, then the rest).
        ``folds`` bounds the whole-state folds of every session that shares it (default: this
        session's own, ``STATE_FOLDS``)."""
        normaliser, replayer = await _fold(store, record.id)
        normaliser.continue_from(_continued(record).get("nextItem", 1))
        return cls(
            store,
            record,
            normaliser,
            replayer,
            settings=settings,
            root=root,
            snapshot_every=snapshot_every,
            turn_limits=turn_limits,
            folds=folds,
        )

    # -- state ----------------------------------------------------------------------------
    @property
    def state(self) -> SessionState:
        """The live working state (``replay.working_state``: no items, the newest turn only,
        ...; the reducer's, not a copy: do not change it)."""
        return self._replayer.view

    @property
    def last_sequence(self) -> int:
        return self._replayer.last_sequence

    @property
    def normaliser(self) -> Normaliser:
        """The session's normaliser (read it, do not change it)."""
        return self._normaliser

    @property
    def turn_count(self) -> int:
        """How many turns the stream has (the working state holds only the newest)."""
        return self._replayer.turn_count

    @property
    def directory(self) -> str:
        """Where the agent works: the session's directory, else the root, else the cwd."""
        return self.record.directory or self._root or str(Path.cwd())

    async def settled_state(self) -> SessionState:
        """The live state once the append in flight, if any, has reached it: it then holds
        every event committed so far (read it, do not change it)."""
        await self._settled()
        return self.state

    async def full_state(self, sequence: int | None = None) -> SessionState:
        """The whole state after ``sequence`` (default: every event committed so far), folded
        from the store (newest snapshot, then the events after it)."""
        await self._settled()  # before taking a fold: an append may wait for one (snapshots)
        return await self._fold_state(self.last_sequence if sequence is None else sequence)

    async def _fold_state(self, sequence: int) -> SessionState:
        """The whole state after ``sequence``, folded from the store within the fold limit."""
        async with self._folds:
            return await state_at(self._store, self.id, sequence, page_size=FOLD_PAGE)

    # -- the pipeline ---------------------------------------------------------------------
    async def sink(self, drafts: Sequence[EventDraft]) -> None:
        """The adapter's sink: normalise and append (nothing while ``_stop_quietly``)."""
        if self._muted:
            logger.info("session %s: dropped %d event(s) of a stopping agent", self.id, len(drafts))
            return
        self._agent_heard = asyncio.get_running_loop().time()
        await self.append(drafts)

    async def append(
        self,
        drafts: Sequence[EventDraft] | Callable[[Normaliser], Sequence[EventDraft]],
    ) -> list[UniversalEvent]:
        """Normalise ``drafts`` (or what the callable builds under the lock) and append them.

        Shielded: a cancelled caller (a client hanging up) cannot leave the live state behind
        the store."""
        return await asyncio.shield(asyncio.ensure_future(self._append(drafts)))

    async def _append(
        self,
        drafts: Sequence[EventDraft] | Callable[[Normaliser], Sequence[EventDraft]],
    ) -> list[UniversalEvent]:
        async with self._append_lock:
            if self._stale:  # an append gave up: start again from what the store holds
                self._normaliser, self._replayer = await _fold(self._store, self.id)
                self._normaliser.continue_from(_continued(self.record).get("nextItem", 1))
                self._stale = False
            batch = drafts(self._normaliser) if callable(drafts) else drafts
            normalised = self._normaliser.normalise(batch)
            if not normalised:
                return []
            before = self._replayer.last_sequence
            try:
                stored = await self._append_retrying(_with_ids(normalised), before)
            except StoreUnavailable as exc:
                # Perhaps stored after all: the next append reads the store first.
                self._stale = True
                self._store_failed(exc)
                raise
            except BaseException:
                # The normaliser counted on the append; whatever happened, the store is right.
                await self._resync()
                raise
            self.store_failure = None
            self._replayer.apply_all(stored)
            self._after_append()
            try:
                if snapshot_due(self._replayer.last_sequence, before, self._snapshot_every):
                    async with self._folds:  # a working replayer's snapshot is a whole fold
                        await write_snapshot_if_due(
                            self._store,
                            self._replayer,
                            self._snapshot_every,
                            previous_sequence=before,
                            page_size=FOLD_PAGE,
                        )
            except StoreError:
                logger.warning("session %s: snapshot failed", self.id, exc_info=True)
            return stored

    async def _append_retrying(
        self, drafts: Sequence[EventDraft], before: int
    ) -> list[UniversalEvent]:
        """``store.append``, tried again while the store is unavailable (``StoreRetry``); one
        try only while the session recovers from such a failure."""
        retry = self.store_retry
        deadline = time.monotonic() + retry.seconds
        pause = retry.first
        while True:
            try:
                return await self._store.append(self.id, drafts, expected_sequence=before)
            except StoreUnavailable as exc:
                if self.store_failure is not None or time.monotonic() + pause > deadline:
                    raise
                logger.warning("session %s: store unavailable, trying again: %s", self.id, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, retry.most)

    def _store_failed(self, exc: StoreUnavailable) -> None:
        """An append gave up on the store: stop the turn's agent and record the turn's end
        once the store answers again (``_recover_store``, a task of its own: the append may be
        the adapter's, inside the agent's turn)."""
        if self.store_failure is None:
            logger.error("session %s: the store stayed unavailable: %s", self.id, exc)
        self.store_failure = exc
        recovery = self._store_recovery
        if not self._closed and (recovery is None or recovery.done()):
            self._store_recovery = asyncio.get_running_loop().create_task(self._recover_store())

    async def _recover_store(self) -> None:
        """Stop the agent of the open turn (what it says can no longer be recorded), then,
        trying every ``store_retry.probe`` seconds, record ``error`` and ``turn.ended {reason:
        error}`` once the store takes them (``store_failure_drafts``)."""
        async with self.control:
            if self._replayer.view.open_turn is not None:
                await self.stop_agent()
        while not self._closed:
            try:
                async with self.control:
                    await self._settled()
                    message = f"the store was unavailable: {self.store_failure or 'unknown'}"
                    await self.append(functools.partial(self._store_failure_drafts, message))
                if self._stale:  # nothing to record, and the store could not be read
                    raise StoreUnavailable(message)
                self.store_failure = None
                logger.warning("session %s: the store answers again", self.id)
                return
            except StoreUnavailable:
                await asyncio.sleep(self.store_retry.probe)
            except Exception:
                logger.exception("session %s: recovery from the store failure failed", self.id)
                return

    def _store_failure_drafts(self, message: str, _: Normaliser) -> list[EventDraft]:
        # Built under the append lock from what the store holds: the turn may have ended, or
        # its turn.started been stored after all.
        return store_failure_drafts(self._replayer.view, message)

    async def _settled(self) -> None:
        """Wait for the append in flight, if any: its events may be committed, and streamed
        to clients, before the live state has them (a client that saw ``turn.ended`` must
        see its prompt start, not queued behind a turn that is over)."""
        if self._append_lock.locked():
            async with self._append_lock:
                pass

    async def _resync(self) -> None:
        try:
            self._normaliser, self._replayer = await _fold(self._store, self.id)
        except StoreError:
            logger.error("session %s: cannot re-read its stream", self.id, exc_info=True)

    # -- the agent ------------------------------------------------------------------------
    async def ensure_adapter(self, resume: bool = False) -> AgentAdapter:
        """The running adapter, started (resuming the native session when ``resume``; a fork
        not yet continued is continued: ``_continue_fork``)."""
        if self.adapter is None and self._fork_pending:
            await self._continue_fork()
        if self.adapter is None:
            config = self._agent_config()
            adapter = create_adapter(self.record.agent, self.sink, self._settings)
            state = self.state
            native = state.native_session_id if resume else None
            try:
                await adapter.start(config, resume=native)
            except Exception:
                if native is None:
                    raise
                # The agent lost its native session (a wiped HOME, an expired thread): start
                # afresh and restore by replay, as the SDK does on a new sandbox.
                logger.warning(
                    "session %s: native resume of %s failed", self.id, native, exc_info=True
                )
                await adapter.stop()
                adapter = create_adapter(self.record.agent, self.sink, self._settings)
                await adapter.start(config, resume=None)
            if native is not None and adapter.native_session_id != native:
                # No native resume: the next prompt carries the conversation so far.
                await self._owe_restore()
            self.adapter = adapter
        return self.adapter

    async def _continue_if_forked(self) -> None:
        """Continue a fork not yet continued (``_continue_fork``): before anything reads its
        state to act, since continuing closes what its copy left open. Holds the control
        lock (its caller's)."""
        if self._fork_pending:
            await self.ensure_adapter()

    async def _owe_restore(self) -> int:
        """Put the replay of the conversation so far before the next prompt; returns how many
        entries it holds."""
        full = await self._fold_state(self.last_sequence)
        text = restore_text(full, self._replay_max_events, self._replay_max_chars)
        self._restore = text or None
        self._restore_entries = replayed_entries(full, text) if text else 0
        return self._restore_entries

    async def _continue_fork(self) -> None:
        """Start the agent of a fork (``fork.py``): on a native fork of the source's agent
        session when ``forked_from.native_session_id`` names one and the agent can fork it,
        else afresh with the replay owed to the first prompt. Then record, in one batch,
        ``session.resumed {forked, native_resume, replayed_events}`` and the closing of what
        the copy left open (requests rejected, a running turn ``interrupted``, queued prompts
        cancelled); ``forked_from.native_resume`` says it on the session's row too."""
        origin = fork_origin(self.record) or {}
        config = self._agent_config()
        adapter = create_adapter(self.record.agent, self.sink, self._settings)
        source = origin.get("native_session_id")
        natively = False
        if isinstance(source, str) and source:
            try:
                natively = await adapter.start_fork(config, source)
            except Exception:
                logger.warning(
                    "session %s: native fork of %s failed", self.id, source, exc_info=True
                )
                await adapter.stop()
                adapter = create_adapter(self.record.agent, self.sink, self._settings)
                await adapter.start(config)
        else:
            await adapter.start(config)
        try:
            replayed = 0 if natively else await self._owe_restore()
            resumed = SessionResumedData(
                reason=FORK_REASON, native_resume=natively, replayed_events=replayed
            )
            mark = daemon_draft("session.resumed", resumed)
            if adapter.native_session_id is not None:
                mark = mark.model_copy(update={"native_session_id": adapter.native_session_id})
            state = self.state
            closing = closing_drafts(state, reason=FORK_REASON)
            closing += dequeued_drafts(state.queued, "cancelled")
            # The mark first: it reopens a fork of an ended session before the closings.
            await self.append([mark, *closing])
        except BaseException:
            self._restore = None
            await adapter.stop()
            raise
        self._fork_pending = False
        self.fork_resumed = resumed
        self.adapter = adapter
        try:
            metadata = {
                **self.record.metadata,
                "forked_from": {**origin, "native_resume": natively},
            }
            self.record = await self._store.update_session(self.id, metadata=metadata)
        except StoreError:  # the stream has it; the row's copy is a convenience
            logger.warning("session %s: recording how the fork continued failed", self.id)

    def _agent_config(self) -> AgentSessionConfig:
        state = self.state
        return AgentSessionConfig(
            session_id=self.id,
            agent=self.record.agent,
            agent_mode=state.agent_mode or self.record.agent_mode or "build",
            permission_mode=state.permission_mode or self.record.permission_mode or "default",
            model=state.model or self.record.model,
            variant=state.variant or self.record.variant,
            directory=self.directory,
            title=self.record.title,
            mcp=self.record.init.get("mcp"),
            skills=self.record.init.get("skills"),
            prior_turns=self.turn_count + _continued(self.record).get("turns", 0),
            always=[
                PermissionData(
                    permission_id=p.permission_id,
                    action=p.action,
                    status=p.status,
                    metadata=p.metadata,
                )
                for p in state.resolved_permissions.values()
                if p.status == "accept_for_session"
            ],
        )

    # -- control --------------------------------------------------------------------------
    async def send_message(
        self, prompt: str, attachments: Sequence[Attachment] = (), *, if_idle: bool = False
    ) -> Accepted:
        """Start a turn with the prompt (``turn.started`` and the user item are stored, then
        the agent has it), or, while a turn runs or prompts wait, record it as
        ``prompt.queued``: it starts when the turns before it end. With ``if_idle`` a busy
        session raises ``TurnInProgress`` instead. ``InvalidSessionRequest`` once terminated,
        ``PathOutsideRoot`` for an attachment outside the session's directory."""
        if attachments:  # resolved (what is recorded and sent), or refused before any record
            attachments = await asyncio.to_thread(resolve_attachments, attachments, self.directory)
        async with self.control:
            await self._settled()
            await self._continue_if_forked()
            self._check_not_terminated()
            state = self.state
            before = self.last_sequence
            if state.open_turn is not None or state.queued:
                if if_idle:
                    raise TurnInProgress(self.id)
                if len(state.queued) >= MAX_QUEUED:
                    raise QueueFull(self.id, MAX_QUEUED)
                queue_id = f"q_{state.queued_count + 1}"
                queued = PromptQueuedData(
                    queue_id=queue_id,
                    message=prompt,
                    attachments=list(attachments),
                )
                await self.append([client_draft("prompt.queued", queued)])
                return Accepted(before=before, queue_id=queue_id, position=len(self.state.queued))
            await self._start_turn(prompt, attachments)
            return Accepted(before=before)

    async def _start_turn(
        self, prompt: str, attachments: Sequence[Attachment], queue_id: str | None = None
    ) -> None:
        """Record the prompt's turn (after ``prompt.dequeued {started}`` for a queued one) and
        hand the prompt to the agent. Holds the control lock (its caller's)."""
        await self._continue_if_forked()  # which reopens a fork of an ended session
        reopen = self.state.ended is not None
        adapter = await self.ensure_adapter(resume=True)
        if reopen:
            resumed = SessionResumedData(reason="reopened", native_resume=True)
            await self.append([daemon_draft("session.resumed", resumed)])
        turn_id = f"turn_{self.turn_count + _continued(self.record).get('turns', 0) + 1}"

        def build(normaliser: Normaliser) -> list[EventDraft]:
            item_id = normaliser.new_item_id()
            drafts = prompt_drafts(prompt, attachments, item_id=item_id, turn_id=turn_id)
            if queue_id is not None:
                started = PromptDequeuedData(queue_id=queue_id, reason="started")
                drafts.insert(0, daemon_draft("prompt.dequeued", started))
            return drafts

        await self.append(build)
        restore, self._restore = self._restore, None
        self._agent_heard = asyncio.get_running_loop().time()
        try:
            await adapter.send(f"{restore}\n\n{prompt}" if restore else prompt, attachments)
        except Exception as exc:
            error = ErrorData(message=f"the agent did not take the prompt: {exc}", code="send")
            await self.append([daemon_draft("error", error), turn_ended_draft("error")])
            raise AgentProcessExited(self.record.agent) from exc
        self._watch_idle(turn_id)

    # -- the idle bound -------------------------------------------------------------------
    def _watch_idle(self, turn_id: str) -> None:
        """Bound the turn ``turn_id`` by ``TurnLimits.idle_timeout`` (none: nothing to do)."""
        timeout = self._limits.idle_timeout
        if timeout is None or self._closed:
            return
        if self._idle_watch is not None:
            self._idle_watch.cancel()  # the turn it watched is over: it would return anyway
        self._idle_watch = asyncio.get_running_loop().create_task(
            self._idle_watcher(turn_id, timeout), name=f"session {self.id} idle bound"
        )

    def _idle_for(self, turn_id: str, timeout: float) -> float | None:
        """Seconds left before the turn ``turn_id`` is over its idle bound (<= 0: it is), or
        None once it ended. Waiting for a permission or question answer counts as heard."""
        state = self.state
        turn = state.open_turn
        if turn is None or turn.turn_id != turn_id or state.ended is not None:
            return None
        loop = asyncio.get_running_loop()
        if state.pending_permissions or state.pending_questions:
            self._agent_heard = loop.time()
        return self._agent_heard + timeout - loop.time()

    async def _idle_watcher(self, turn_id: str, timeout: float) -> None:
        while (left := self._idle_for(turn_id, timeout)) is not None:
            if left > 0:
                await asyncio.sleep(left)
                continue
            async with self.control:  # no cancel or message in between
                await self._settled()
                left = self._idle_for(turn_id, timeout)
                if left is None or left > 0:
                    continue
                await self._end_idle_turn(timeout)
            return

    async def _end_idle_turn(self, timeout: float) -> None:
        """Stop the quiet agent (the next prompt starts it again), then end its turn with an
        error naming the bound. Holds the control lock."""
        logger.warning(
            "session %s: the agent sent nothing for %s s during a turn: stopping it",
            self.id,
            timeout,
        )
        await self._stop_quietly()
        error = ErrorData(
            message=f"the agent sent nothing for {timeout:g} s during the turn (the turn idle "
            "timeout): the turn ended and the agent was stopped",
            code="turn_idle_timeout",
            details={"idleTimeoutSeconds": timeout},
        )

        def build(normaliser: Normaliser) -> list[EventDraft]:
            # Under the append lock: nothing if the agent ended the turn in the meantime.
            if not normaliser.turn_open:
                return []
            return [daemon_draft("error", error), turn_ended_draft("error")]

        await self.append(build)

    def _after_append(self) -> None:
        """Start the next queued prompt once no turn runs (in a task: the append that ended
        the turn may be the adapter's, which must not wait for a whole prompt)."""
        view = self._replayer.view
        if not view.queued or view.open_turn is not None or self._closed:
            return
        self._drain_wanted = True
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._drain_wanted and not self._closed:
            self._drain_wanted = False
            async with self.control:
                await self._settled()
                state = self.state
                if not state.queued or state.open_turn is not None:
                    continue
                if state.ended is not None and state.ended.terminated_by == "daemon":
                    await self.append(dequeued_drafts(state.queued, "session_ended"))
                    continue
                first = state.queued[0]
                attachments = [Attachment.model_validate(a) for a in first.attachments]
                try:
                    await self._start_turn(first.message, attachments, first.queue_id)
                except Exception:
                    # Recorded in the stream (an error and turn.ended, or the store's own
                    # failure); the next prompt in the queue gets its turn all the same.
                    logger.warning("session %s: queued prompt failed", self.id, exc_info=True)
                    self._drain_wanted = bool(self.state.queued) and not self._closed

    async def cancel_queued(self, queue_id: str) -> None:
        """Take a waiting prompt out of the queue (``prompt.dequeued {cancelled}``);
        ``RequestNotFound`` when it is not waiting (started, cancelled or never queued)."""
        async with self.control:
            await self._settled()
            waiting = [p for p in self.state.queued if p.queue_id == queue_id]
            if not waiting:
                raise RequestNotFound("queued_prompt", queue_id, self.id)
            await self.append(dequeued_drafts(waiting, "cancelled"))

    async def cancel(self) -> None:
        """Interrupt the running turn (it ends with ``reason: cancelled``) and cancel the
        prompts waiting behind it; no-op when neither."""
        async with self.control:
            await self._settled()
            await self._continue_if_forked()
            state = self.state
            drafts = dequeued_drafts(state.queued, "cancelled")
            if state.open_turn is not None:
                stopped = await self._cancel_agent()
                metadata = {"agentStopped": True} if stopped else None
                drafts.append(turn_ended_draft("cancelled", metadata=metadata))
            if drafts:
                await self.append(drafts)

    async def _cancel_agent(self) -> bool:
        """Ask the agent to cancel its turn; if it has not within ``TurnLimits.cancel_grace``
        seconds, stop its process (the next prompt starts it again). True when stopped."""
        adapter = self.adapter
        if adapter is None:
            return False
        grace = self._limits.cancel_grace
        try:
            await asyncio.wait_for(adapter.cancel(), grace)
        except TimeoutError:
            logger.warning(
                "session %s: the agent did not cancel its turn within %s s: stopping it",
                self.id,
                grace,
            )
            await self._stop_quietly()
            return True
        return False

    async def _stop_quietly(self) -> None:
        """Stop the agent in the middle of a turn that the caller ends: what the agent says
        while it stops is dropped."""
        self._muted = True
        try:
            await self.stop_agent()
        finally:
            self._muted = False

    async def terminate(self) -> None:
        """Stop the agent and record ``session.ended {terminated, daemon}`` (no-op if ended),
        after cancelling the prompts still waiting (``prompt.dequeued {session_ended}``)."""
        async with self.control:
            await self.stop_agent()
            state = self.state
            drafts = dequeued_drafts(state.queued, "session_ended")
            if state.ended is None:
                ended = SessionEndedData(
                    reason="terminated", terminated_by="daemon", message="terminated by daemon"
                )
                drafts.append(daemon_draft("session.ended", ended))
            if drafts:
                await self.append(drafts)

    async def stop_agent(self) -> None:
        adapter, self.adapter = self.adapter, None
        if adapter is not None:
            await adapter.stop()

    async def close(self) -> None:
        """Stop serving the session here (its server stops or it is deleted): no queued
        prompt starts any more, and the agent stops. The stream stays as it is."""
        self._closed = True
        recovery, self._store_recovery = self._store_recovery, None
        if recovery is not None and recovery is not asyncio.current_task():
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
        for task in (self._drain_task, self._idle_watch):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._drain_task = self._idle_watch = None
        await self.stop_agent()

    async def reply_permission(self, permission_id: str, reply: PermissionReply) -> None:
        async with self.control:
            await self._settled()  # a client may answer as soon as it saw the request
            await self._continue_if_forked()
            self._check_answerable()
            if permission_id not in self.state.pending_permissions:
                raise RequestNotFound("permission", permission_id, self.id)
            adapter = await self.ensure_adapter(resume=True)
            await adapter.reply_permission(permission_id, reply)

    async def reply_question(self, question_id: str, answers: list[list[str]] | None) -> None:
        """Answer a question (``answers``), or reject it (None)."""
        async with self.control:
            await self._settled()
            await self._continue_if_forked()
            self._check_answerable()
            if question_id not in self.state.pending_questions:
                raise RequestNotFound("question", question_id, self.id)
            adapter = await self.ensure_adapter(resume=True)
            if answers is None:
                await adapter.reject_question(question_id)
            else:
                await adapter.reply_question(question_id, answers)

    def _check_answerable(self) -> None:
        if self.state.ended is not None:
            raise InvalidSessionRequest("session ended", self.id)

    def _check_not_terminated(self) -> None:
        ended = self.state.ended
        if ended is not None and ended.terminated_by == "daemon":
            raise InvalidSessionRequest("session terminated", self.id)

    # -- after a restart ------------------------------------------------------------------
    async def recover(self) -> None:
        """Close what the previous server left open, start the agent again (resuming its
        native session), and record ``session.resumed {server_restart}``."""
        async with self.control:
            if self._fork_pending:
                # A fork never served before: continuing it is its recovery (``fork.py``).
                await self._continue_if_forked()
                return
            state = self.state
            drafts = closing_drafts(state)
            native = state.native_session_id
            adapter = await self.ensure_adapter(resume=True)
            native_resume = native is not None and adapter.native_session_id == native
            replayed = self._restore_entries if self._restore else 0
            resumed = SessionResumedData(
                reason="server_restart", native_resume=native_resume, replayed_events=replayed
            )
            mark = daemon_draft("session.resumed", resumed)
            if adapter.native_session_id is not None and not native_resume:
                # The new native session, so that the next restart resumes that one.
                mark = mark.model_copy(update={"native_session_id": adapter.native_session_id})
            drafts.append(mark)
            await self.append(drafts)


@dataclass(frozen=True)
class Accepted:
    """What became of a prompt: its turn started (``queue_id`` None), or it waits in the
    queue at ``position`` (1 = next). ``before`` is the last sequence before its first event."""

    before: int
    queue_id: str | None = None
    position: int = 0


def _with_ids(drafts: Sequence[EventDraft]) -> list[EventDraft]:
    """The drafts with their event ids and times fixed before the first try, so that the
    store recognises a retry of a batch it stored after all (its idempotent append)."""
    now = utc_now()
    return [
        d
        if d.event_id is not None and d.time is not None
        else d.model_copy(update={"event_id": d.event_id or new_event_id(), "time": d.time or now})
        for d in drafts
    ]


def _continued(record: SessionRecord) -> dict[str, int]:
    """The ``continueFrom`` of a session restored by replay (empty for others)."""
    value = record.init.get("continueFrom")
    return value if isinstance(value, dict) else {}


async def _fold(store: EventStore, session_id: str) -> tuple[Normaliser, Replayer]:
    """The normaliser and the (working) reducer of a stored stream, in one pass: the reducer's
    state from the newest snapshot, the normaliser from that state, then both fed the events
    after it."""
    last = await store.last_sequence(session_id)
    snapshot = await load_state(store, session_id, last) if last else None
    snapshot = snapshot or SessionState(session_id=session_id)
    normaliser = Normaliser.from_state(snapshot)
    replayer = Replayer(snapshot, copy=False, working=True)
    after = replayer.last_sequence
    while after < last:
        # The store raises ``StoreCorrupt`` for a gap; an empty page is one too: a session
        # folded short of its last sequence would answer every append with a conflict.
        page = await store.read(session_id, after=after, limit=FOLD_PAGE)
        if not page:
            raise StoreCorrupt(
                session_id,
                f"events {after + 1}..{last} missing: the stream ends at {after}",
                sequence=after + 1,
            )
        for event in page:
            normaliser.observe(event)
            replayer.apply(event)
        after = page[-1].sequence
    return normaliser, replayer
