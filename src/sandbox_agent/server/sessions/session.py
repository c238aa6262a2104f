"""One session as the server runs it: its append pipeline, its live state, its agent.

The pipeline is the only way into the store: ``drafts -> Normaliser.normalise ->
store.append(expected_sequence=<last seen>)``, for the adapter's drafts (the adapter's sink) and
the session layer's own alike, serialised by one lock. The live state is the replay reducer
(``Replayer``) fed with exactly what each append stored; nothing else keeps a copy. A snapshot is
written every ``snapshot_every`` events.

Control operations (a message, cancel, terminate, a HITL reply) take the session's control lock,
so one turn is admitted at a time and a cancel never races a message. The adapter's background
output only takes the append lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from sandbox_agent.agents import (
    AgentAdapter,
    AgentSessionConfig,
    AgentSettings,
    Attachment,
    Normaliser,
    PermissionReply,
    create_adapter,
    prompt_drafts,
    turn_ended_draft,
)
from sandbox_agent.events import (
    ErrorData,
    EventDraft,
    PermissionData,
    QuestionData,
    SessionEndedData,
    SessionResumedData,
    UniversalEvent,
)
from sandbox_agent.replay import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_EVENTS,
    Replayer,
    SessionState,
    replayed_entries,
    restore_text,
    write_snapshot_if_due,
)
from sandbox_agent.replay.snapshots import load_state
from sandbox_agent.server.errors import (
    ApiError,
    invalid_request,
    request_not_found,
    turn_in_progress,
)
from sandbox_agent.store import EventStore, SessionRecord, StoreError

logger = logging.getLogger(__name__)

PAGE = 1000


def _daemon(event_type: str, data: object) -> EventDraft:
    return EventDraft.model_validate(
        {"type": event_type, "data": data, "source": "daemon", "synthetic": True}
    )


class LiveSession:
    """A session the server holds: build it with ``load`` (from the store)."""

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
    ) -> None:
        self.id = record.id
        self.record = record
        self._store = store
        self._normaliser = normaliser
        self._replayer = replayer
        self._settings = settings
        self._root = root
        self._snapshot_every = snapshot_every
        self._replay_max_events = DEFAULT_MAX_EVENTS
        self._replay_max_chars = DEFAULT_MAX_CHARS
        self._append_lock = asyncio.Lock()
        #: One control operation (message, cancel, terminate, reply) at a time.
        self.control = asyncio.Lock()
        self.adapter: AgentAdapter | None = None
        #: The replay text owed to the next prompt: the agent could not resume natively.
        self._restore: str | None = None

    @classmethod
    async def load(
        cls,
        store: EventStore,
        record: SessionRecord,
        *,
        settings: AgentSettings,
        root: str | None = None,
        snapshot_every: int = 1000,
    ) -> LiveSession:
        """The session as its stored stream leaves it (newest snapshot, then the rest)."""
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
        )

    # -- state ----------------------------------------------------------------------------
    @property
    def state(self) -> SessionState:
        """The live state (the reducer's, not a copy: do not change it)."""
        return self._replayer.view

    @property
    def last_sequence(self) -> int:
        return self._replayer.last_sequence

    async def settled_state(self) -> SessionState:
        """The live state once the append in flight, if any, has reached it: it then holds
        every event committed so far (read it, do not change it)."""
        await self._settled()
        return self.state

    # -- the pipeline ---------------------------------------------------------------------
    async def sink(self, drafts: Sequence[EventDraft]) -> None:
        """The adapter's sink: normalise and append."""
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
            batch = drafts(self._normaliser) if callable(drafts) else drafts
            normalised = self._normaliser.normalise(batch)
            if not normalised:
                return []
            before = self._replayer.last_sequence
            try:
                stored = await self._store.append(self.id, normalised, expected_sequence=before)
            except BaseException:
                # The normaliser counted on the append; whatever happened, the store is right.
                await self._resync()
                raise
            self._replayer.apply_all(stored)
            try:
                await write_snapshot_if_due(
                    self._store, self._replayer, self._snapshot_every, previous_sequence=before
                )
            except StoreError:
                logger.warning("session %s: snapshot failed", self.id, exc_info=True)
            return stored

    async def _settled(self) -> None:
        """Wait for the append in flight, if any: its events may be committed, and streamed
        to clients, before the live state has them (a client that saw ``turn.ended`` must not
        get 409 ``turn_in_progress``)."""
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
        """The running adapter, started (resuming the native session when ``resume``)."""
        if self.adapter is None:
            state = self.state
            adapter = create_adapter(self.record.agent, self.sink, self._settings)
            config = AgentSessionConfig(
                session_id=self.id,
                agent=self.record.agent,
                agent_mode=state.agent_mode or self.record.agent_mode or "build",
                permission_mode=state.permission_mode or self.record.permission_mode or "default",
                model=state.model or self.record.model,
                variant=state.variant or self.record.variant,
                directory=self.record.directory or self._root or str(Path.cwd()),
                title=self.record.title,
                mcp=self.record.init.get("mcp"),
                skills=self.record.init.get("skills"),
                prior_turns=len(state.turns) + _continued(self.record).get("turns", 0),
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
                text = restore_text(state, self._replay_max_events, self._replay_max_chars)
                self._restore = text or None
            self.adapter = adapter
        return self.adapter

    # -- control --------------------------------------------------------------------------
    async def send_message(self, prompt: str, attachments: Sequence[Attachment] = ()) -> int:
        """Record the prompt (``turn.started`` and the user item), hand it to the agent, and
        return the last sequence before it. 409 while a turn runs; 400 once terminated."""
        async with self.control:
            await self._settled()
            state = self.state
            reopen = False
            if state.ended is not None:
                if state.ended.terminated_by == "daemon":
                    raise invalid_request("session terminated", sessionId=self.id)
                reopen = True
            if state.open_turn is not None:
                raise turn_in_progress(self.id)
            adapter = await self.ensure_adapter(resume=True)
            if reopen:
                resumed = SessionResumedData(reason="reopened", native_resume=True)
                await self.append([_daemon("session.resumed", resumed)])
            before = self.last_sequence
            turn_id = f"turn_{len(self.state.turns) + _continued(self.record).get('turns', 0) + 1}"

            def build(normaliser: Normaliser) -> list[EventDraft]:
                item_id = normaliser.new_item_id()
                return prompt_drafts(prompt, attachments, item_id=item_id, turn_id=turn_id)

            await self.append(build)
            restore, self._restore = self._restore, None
            try:
                await adapter.send(f"{restore}\n\n{prompt}" if restore else prompt, attachments)
            except Exception as exc:
                error = ErrorData(message=f"the agent did not take the prompt: {exc}", code="send")
                await self.append([_daemon("error", error), turn_ended_draft("error")])
                raise ApiError(
                    "agent_process_exited", 500, f"agent process exited: {self.record.agent}"
                ) from exc
            return before

    async def cancel(self) -> None:
        """Interrupt the running turn (no-op when none); it ends with ``reason: cancelled``."""
        async with self.control:
            await self._settled()
            if self.state.open_turn is None:
                return
            if self.adapter is not None:
                await self.adapter.cancel()
            await self.append([turn_ended_draft("cancelled")])

    async def terminate(self) -> None:
        """Stop the agent and record ``session.ended {terminated, daemon}`` (no-op if ended)."""
        async with self.control:
            await self.stop_agent()
            if self.state.ended is not None:
                return
            ended = SessionEndedData(
                reason="terminated", terminated_by="daemon", message="terminated by daemon"
            )
            await self.append([_daemon("session.ended", ended)])

    async def stop_agent(self) -> None:
        adapter, self.adapter = self.adapter, None
        if adapter is not None:
            await adapter.stop()

    async def reply_permission(self, permission_id: str, reply: PermissionReply) -> None:
        async with self.control:
            self._check_answerable()
            if permission_id not in self.state.pending_permissions:
                raise request_not_found("permission", permission_id, self.id)
            adapter = await self.ensure_adapter(resume=True)
            await adapter.reply_permission(permission_id, reply)

    async def reply_question(self, question_id: str, answers: list[list[str]] | None) -> None:
        """Answer a question (``answers``), or reject it (None)."""
        async with self.control:
            self._check_answerable()
            if question_id not in self.state.pending_questions:
                raise request_not_found("question", question_id, self.id)
            adapter = await self.ensure_adapter(resume=True)
            if answers is None:
                await adapter.reject_question(question_id)
            else:
                await adapter.reply_question(question_id, answers)

    def _check_answerable(self) -> None:
        if self.state.ended is not None:
            raise invalid_request("session ended", sessionId=self.id)

    # -- after a restart ------------------------------------------------------------------
    async def recover(self) -> None:
        """Close what the previous server left open, start the agent again (resuming its
        native session), and record ``session.resumed {server_restart}``."""
        async with self.control:
            state = self.state
            drafts: list[EventDraft] = []
            interrupted = {"reason": "interrupted"}
            for p in state.pending_permissions.values():
                permission = PermissionData(
                    permission_id=p.permission_id,
                    action=p.action,
                    status="reject",
                    metadata={**(p.metadata or {}), **interrupted},
                )
                drafts.append(_daemon("permission.resolved", permission))
            for q in state.pending_questions.values():
                question = QuestionData.model_validate(
                    {
                        "question_id": q.question_id,
                        "prompt": q.prompt,
                        "options": q.options,
                        "status": "rejected",
                        "response": None,
                        "metadata": interrupted,
                    }
                )
                drafts.append(_daemon("question.resolved", question))
            if state.open_turn is not None:
                drafts.append(turn_ended_draft("interrupted"))
            native = state.native_session_id
            adapter = await self.ensure_adapter(resume=True)
            native_resume = native is not None and adapter.native_session_id == native
            replayed = replayed_entries(state, self._restore) if self._restore else 0
            resumed = SessionResumedData(
                reason="server_restart", native_resume=native_resume, replayed_events=replayed
            )
            mark = _daemon("session.resumed", resumed)
            if adapter.native_session_id is not None and not native_resume:
                # The new native session, so that the next restart resumes that one.
                mark = mark.model_copy(update={"native_session_id": adapter.native_session_id})
            drafts.append(mark)
            await self.append(drafts)


def _continued(record: SessionRecord) -> dict[str, int]:
    """The ``continueFrom`` of a session restored by replay (empty for others)."""
    value = record.init.get("continueFrom")
    return value if isinstance(value, dict) else {}


async def _fold(store: EventStore, session_id: str) -> tuple[Normaliser, Replayer]:
    """The normaliser and the reducer of a stored stream (the reducer from its newest
    snapshot; the normaliser, which keeps none, from every event)."""
    last = await store.last_sequence(session_id)
    snapshot = await load_state(store, session_id, last) if last else None
    replayer = Replayer(snapshot or SessionState(session_id=session_id), copy=False)
    normaliser = Normaliser()
    after = 0
    while after < last:
        page = await store.read(session_id, after=after, limit=PAGE)
        if not page:
            break
        for event in page:
            normaliser.observe(event)
            if event.sequence > replayer.last_sequence:
                replayer.apply(event)
        after = page[-1].sequence
    return normaliser, replayer
