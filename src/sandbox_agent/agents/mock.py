"""The built-in mock agent (agent id ``mock``): no process, the upstream v0.1 command set.

``send(prompt)`` numbers the prompt ``n`` (1, 2, ... per session, continuing after
``AgentSessionConfig.prior_turns`` on resume) and emits the drafts of
``mock_script.script_for(prompt, n)`` one by one from a background task, waiting ``delay``
seconds before each (default 0.2 s as upstream, ``--mock-delay-ms``; tests use 0). Then, after one
more wait, it emits ``turn.ended {reason: completed}``, except:

- after ``session.ended`` (the ``end`` command): the normaliser closes the turn before it;
- when the last draft is a permission or question request: the turn waits, and ends once every
  request it made is answered (ours; upstream left such a turn open for ever). Turns whose
  requests come earlier (``demo``, the bash prompt) end at once, as upstream's did; their requests
  stay answerable.

The split with the session layer (``base.py``): the mock emits neither ``session.started`` nor
``turn.started`` nor the user's message item; the session layer records those (upstream's mock
recorded the user item itself as ``mock_<n>_user``; ours gets the session's ``itm_<n>``).

HITL: nothing is forwarded (there is no agent); an answer is recorded at once as its
``.resolved`` draft. An ``always`` answer is remembered (``hitl.AlwaysRules``) and a later
matching request is resolved ``accept_for_session`` right after it is emitted.

A forked session's mock (``start_fork``) forks "natively": a new native id, the source's left
alone; it keeps no history, so the session layer's two ways of continuing a fork (native fork,
restore by replay) differ only in the replay text put before the first prompt, which the mock
echoes back with the prompt.

``cancel()`` stops the background task between two events and returns once nothing more will be
emitted for the turn; the session layer writes ``turn.ended {reason: cancelled}``. Requests the
turn made stay answerable, but answering them no longer ends a turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sandbox_agent.agents.base import (
    AgentAdapter,
    AgentMode,
    AgentModel,
    AgentModels,
    AgentSessionConfig,
    Attachment,
    EventSink,
    PermissionReply,
)
from sandbox_agent.agents.catalog import CAPABILITIES
from sandbox_agent.agents.drafts import turn_ended_draft
from sandbox_agent.agents.errors import (
    AgentError,
    AgentNotStarted,
    TurnInProgress,
    UnknownRequest,
)
from sandbox_agent.agents.hitl import AlwaysRules, permission_resolved, question_resolved
from sandbox_agent.agents.mock_script import script_for
from sandbox_agent.events import EventDraft, PermissionData, QuestionData

logger = logging.getLogger(__name__)

DEFAULT_DELAY = 0.2

MOCK_CAPABILITIES = CAPABILITIES["mock"]

_REQUESTS = ("permission.requested", "question.requested")


@dataclass
class _Turn:
    n: int
    #: Ids of the permissions and questions this turn asked.
    requests: set[str] = field(default_factory=set)
    cancelled: bool = False
    #: Its drafts are out and it waits for answers to end.
    waiting: bool = False


class MockAgent(AgentAdapter):
    """The mock agent of one session."""

    id = "mock"
    capabilities = MOCK_CAPABILITIES

    def __init__(self, sink: EventSink, *, delay: float = DEFAULT_DELAY) -> None:
        super().__init__(sink)
        if delay < 0:
            raise ValueError("delay must be >= 0")
        #: Seconds before each event of a turn.
        self.delay = delay
        self._session: AgentSessionConfig | None = None
        self._stopped = False
        self._prompts = 0
        # Held while emitting, so that cancel() and replies never interleave with an emit.
        self._lock = asyncio.Lock()
        self._turn: _Turn | None = None
        self._task: asyncio.Task[None] | None = None
        self._permissions: dict[str, PermissionData] = {}
        self._questions: dict[str, QuestionData] = {}
        self._always = AlwaysRules()

    async def modes(self) -> list[AgentMode]:
        return [
            AgentMode(id="build", name="Build", description="Mock agent for UI testing"),
            AgentMode(id="plan", name="Plan", description="Plan-only mock mode"),
        ]

    async def models(self) -> AgentModels:
        return AgentModels(models=[AgentModel(id="mock", name="Mock")], default_model="mock")

    async def start(self, session: AgentSessionConfig, resume: str | None = None) -> None:
        if self._session is not None or self._stopped:
            raise AgentError("the mock agent was already started")
        self._session = session
        for request in session.always:  # answered always before a restart
            self._always.remember(request)
        self._prompts = session.prior_turns
        self.native_session_id = resume or f"mock-{session.session_id}"

    async def start_fork(self, session: AgentSessionConfig, source: str) -> bool:
        # The mock keeps no history: its native fork is a new id (the source's stays as it was).
        await self.start(session)
        self.native_session_id = f"mock-{session.session_id}"
        return True

    async def send(self, prompt: str, attachments: Sequence[Attachment] = ()) -> None:
        self._require_started()
        if self._busy():
            raise TurnInProgress("a mock turn is still running")
        self._prompts += 1
        turn = self._turn = _Turn(n=self._prompts)
        self._task = asyncio.create_task(
            self._run(turn, script_for(prompt, turn.n)), name=f"mock turn {turn.n}"
        )
        self._task.add_done_callback(_log_failure)

    async def cancel(self) -> None:
        turn, task = self._turn, self._task
        if turn is None:
            return
        async with self._lock:
            turn.cancelled = True
            turn.waiting = False
            if task is not None:
                task.cancel()
        if task is not None:
            await asyncio.wait([task])

    async def reply_permission(self, permission_id: str, reply: PermissionReply) -> None:
        self._require_started()
        async with self._lock:
            request = self._permissions.get(permission_id)
            if request is None:
                raise UnknownRequest("permission", permission_id)
            await self._resolve_permission(request, reply)
            await self._end_waiting_turn()

    async def reply_question(self, question_id: str, answers: list[list[str]]) -> None:
        await self._resolve_question(question_id, answers)

    async def reject_question(self, question_id: str) -> None:
        await self._resolve_question(question_id, None)

    async def stop(self) -> None:
        await self.cancel()
        self._stopped = True
        self._permissions.clear()
        self._questions.clear()

    # -- internals ------------------------------------------------------------------------
    def _require_started(self) -> None:
        if self._session is None or self._stopped:
            raise AgentNotStarted("the mock agent is not running")

    def _busy(self) -> bool:
        if self._turn is None or self._turn.cancelled:
            return False
        return self._turn.waiting or (self._task is not None and not self._task.done())

    def _pending(self, turn: _Turn) -> bool:
        return any(r in self._permissions or r in self._questions for r in turn.requests)

    async def _run(self, turn: _Turn, script: list[EventDraft]) -> None:
        if self.delay == 0:
            await self._run_at_once(turn, script)
            return
        for draft in script:
            await asyncio.sleep(self.delay)
            async with self._lock:
                if turn.cancelled:
                    return
                await self._emit_scripted(turn, draft)
        await asyncio.sleep(self.delay)
        async with self._lock:
            await self._finish(turn, script)

    async def _run_at_once(self, turn: _Turn, script: list[EventDraft]) -> None:
        """Zero delay: the events between two requests go to the sink as one batch (one
        commit), and the turn's end with the last of them."""
        await asyncio.sleep(0)  # send() returns before the first event, as with a delay
        async with self._lock:
            batch: list[EventDraft] = []
            for draft in script:
                if turn.cancelled:
                    return
                if draft.type in _REQUESTS:
                    await self.emit(*batch)
                    batch = []
                    await self._emit_scripted(turn, draft)
                else:
                    batch.append(draft)
            await self._finish(turn, script, batch)

    async def _finish(
        self, turn: _Turn, script: list[EventDraft], batch: Sequence[EventDraft] = ()
    ) -> None:
        """Emit ``batch`` and, unless the turn waits for answers or was cut short, its end."""
        last = script[-1].type if script else None
        if turn.cancelled:
            return
        if last == "session.ended" or (last in _REQUESTS and self._pending(turn)):
            await self.emit(*batch)
            turn.waiting = last != "session.ended"
            return
        await self.emit(*batch, turn_ended_draft("completed"))

    async def _emit_scripted(self, turn: _Turn, draft: EventDraft) -> None:
        # Called under the lock, so a reply cannot look for a request still being emitted.
        await self.emit(draft)
        if draft.type == "permission.requested":
            permission = PermissionData.model_validate(draft.data)
            self._permissions[permission.permission_id] = permission
            turn.requests.add(permission.permission_id)
            if self._always.matches(permission):
                await self._resolve_permission(permission, "always", automatic=True)
        elif draft.type == "question.requested":
            question = QuestionData.model_validate(draft.data)
            self._questions[question.question_id] = question
            turn.requests.add(question.question_id)

    async def _resolve_permission(
        self, request: PermissionData, reply: PermissionReply, *, automatic: bool = False
    ) -> None:
        await self.emit(permission_resolved(request, reply, automatic=automatic))
        del self._permissions[request.permission_id]
        if reply == "always" and not automatic:
            self._always.remember(request)

    async def _resolve_question(self, question_id: str, answers: list[list[str]] | None) -> None:
        self._require_started()
        async with self._lock:
            request = self._questions.get(question_id)
            if request is None:
                raise UnknownRequest("question", question_id)
            await self.emit(question_resolved(request, answers))
            del self._questions[question_id]
            await self._end_waiting_turn()

    async def _end_waiting_turn(self) -> None:
        turn = self._turn
        if turn is not None and turn.waiting and not self._pending(turn):
            turn.waiting = False
            await self.emit(turn_ended_draft("completed"))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("mock turn failed", exc_info=exc)
