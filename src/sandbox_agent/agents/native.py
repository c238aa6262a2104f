"""What every adapter of a real agent CLI shares: its command, environment, log file and HITL
bookkeeping. ``ClaudeAgent``, ``CodexAgent``, ``OpenCodeAgent``, ``AmpAgent`` and ``AcpAgent``
subclass ``NativeAgent``.

HITL bookkeeping: ``ask_permission`` / ``ask_question`` remember a request the agent waits on and
emit its ``.requested`` draft (or, for a permission that matches an ``always`` rule, answer it at
once through ``forward_permission`` and record a synthetic ``accept_for_session``);
``reply_permission`` / ``reply_question`` / ``reject_question`` forward the client's answer through
the subclass's ``forward_*`` and emit the ``.resolved`` draft once the agent took it. A request
stays pending when forwarding fails, so the client can retry.
"""

from __future__ import annotations

import abc
import asyncio
import re
from pathlib import Path
from typing import ClassVar

from sandbox_agent.agents.base import (
    AgentAdapter,
    AgentMode,
    AgentModels,
    AgentSessionConfig,
    EventSink,
    PermissionReply,
)
from sandbox_agent.agents.environment import agent_environment
from sandbox_agent.agents.errors import AgentError, AgentNotStarted, UnknownRequest
from sandbox_agent.agents.hitl import AlwaysRules, permission_resolved, question_resolved
from sandbox_agent.agents.settings import AgentSettings
from sandbox_agent.events import EventDraft, PermissionData, QuestionData

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class AgentNotInstalled(AgentError):
    """The agent's CLI is neither in the agents dir nor on ``PATH``."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(
            f"agent not installed: {agent_id} (run: sandbox-agent install-agent {agent_id})"
        )
        self.agent_id = agent_id


class NativeAgent(AgentAdapter, abc.ABC):
    """Base of the adapters that run a real agent CLI."""

    #: ``GET /v1/agents/{agent}/modes`` when the agent offers no live list.
    MODES: ClassVar[list[AgentMode]] = [
        AgentMode(id="build", name="Build", description="Default build mode")
    ]

    def __init__(self, sink: EventSink, settings: AgentSettings) -> None:
        super().__init__(sink)
        self.settings = settings
        self._session: AgentSessionConfig | None = None
        self._permissions: dict[str, PermissionData] = {}
        self._questions: dict[str, QuestionData] = {}
        self._always = AlwaysRules()
        self._hitl_lock = asyncio.Lock()

    # -- what the subclasses use ----------------------------------------------------------
    def _begin(self, session: AgentSessionConfig) -> None:
        """Take ``session`` (in ``start``), with its earlier ``always`` answers."""
        self._session = session
        for request in session.always:
            self._always.remember(request)

    @property
    def session(self) -> AgentSessionConfig:
        if self._session is None:
            raise AgentNotStarted(f"{self.id}: start() first")
        return self._session

    @property
    def directory(self) -> str:
        return self.session.directory or str(Path.cwd())

    def command(self) -> list[str]:
        """The agent's command line; ``AgentNotInstalled`` when it cannot be found."""
        command = self.settings.command(self.id)
        if command is None:
            raise AgentNotInstalled(self.id)
        return command

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The agent's environment (``environment.agent_environment``: the server's without its
        own variables and other agents' credentials) plus ``extra``, ``PWD`` = directory."""
        extra = {**self.settings.extra_env, **(extra or {})}
        return agent_environment(self.id, self.directory, extra)

    def log_path(self, name: str | None = None) -> Path:
        """Where this agent's stderr goes: ``<log dir>/<agent>/<name or session id>.log``."""
        agent = _UNSAFE.sub("_", self.id)
        stem = _UNSAFE.sub("_", name or self.session.session_id)
        return self.settings.logs() / agent / f"{stem}.log"

    async def modes(self) -> list[AgentMode]:
        return list(self.MODES)

    async def models(self) -> AgentModels:
        return AgentModels()

    # -- HITL ------------------------------------------------------------------------------
    async def ask_permission(self, request: PermissionData, *before: EventDraft) -> None:
        """Emit ``before`` and the request; answer it at once if an ``always`` rule matches."""
        self._permissions[request.permission_id] = request
        drafts = [*before, EventDraft(type="permission.requested", data=request)]
        if self._always.matches(request):
            await self.forward_permission(request, "always")
            del self._permissions[request.permission_id]
            drafts.append(permission_resolved(request, "always", automatic=True))
        await self.emit(*drafts)

    async def ask_question(self, request: QuestionData, *before: EventDraft) -> None:
        self._questions[request.question_id] = request
        await self.emit(*before, EventDraft(type="question.requested", data=request))

    def forget_requests(self) -> list[str]:
        """Drop every pending request (the agent that asked is gone); their ids."""
        ids = [*self._permissions, *self._questions]
        self._permissions.clear()
        self._questions.clear()
        return ids

    async def reply_permission(self, permission_id: str, reply: PermissionReply) -> None:
        async with self._hitl_lock:
            request = self._permissions.get(permission_id)
            if request is None:
                raise UnknownRequest("permission", permission_id)
            await self.forward_permission(request, reply)
            self._permissions.pop(permission_id, None)
            if reply == "always":
                self._always.remember(request)
            await self.emit(permission_resolved(request, reply))

    async def reply_question(self, question_id: str, answers: list[list[str]]) -> None:
        async with self._hitl_lock:
            request = self._questions.get(question_id)
            if request is None:
                raise UnknownRequest("question", question_id)
            await self.forward_question(request, answers)
            self._questions.pop(question_id, None)
            await self.emit(question_resolved(request, answers))

    async def reject_question(self, question_id: str) -> None:
        async with self._hitl_lock:
            request = self._questions.get(question_id)
            if request is None:
                raise UnknownRequest("question", question_id)
            await self.forward_question(request, None)
            self._questions.pop(question_id, None)
            await self.emit(question_resolved(request, None))

    @abc.abstractmethod
    async def forward_permission(self, request: PermissionData, reply: PermissionReply) -> None:
        """Send the answer to the agent; raise if it could not be delivered."""

    async def forward_question(
        self, request: QuestionData, answers: list[list[str]] | None
    ) -> None:
        """Send the answers (None: a refusal) to the agent; agents without questions refuse."""
        raise UnknownRequest("question", request.question_id)
