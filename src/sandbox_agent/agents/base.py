"""The contract every agent adapter implements.

An ``AgentAdapter`` runs one session's agent (a child process, a shared server, or nothing at all
for the mock), talks to it in its native protocol, and turns what it says into ``EventDraft``s
that it hands to its *sink*, an async callable given at construction::

    EventSink = Callable[[Sequence[EventDraft]], Awaitable[None]]

The sink is the session layer (``sandbox_agent.sessions``): it passes every batch through its
``Normaliser`` and appends the result to the store. An adapter never touches the store, never
assigns sequences, event ids or times, and never decides what the client sees beyond its own
mapping. When ``await sink(...)`` returns, the drafts are stored; if it raises, they are not.

Who records what (the rest of the stream is the normaliser's, ``sessions/normaliser.py``):

- the session layer: ``session.started`` (after ``start()`` returns, so it can carry
  ``native_session_id``), ``session.resumed``; for each prompt ``turn.started`` and the user's
  message item (source ``client``, see ``sessions/drafts.py``), both stored *before* ``send()``
  is called, which is what lets ``POST /messages`` answer 204; ``turn.ended {reason: cancelled}``
  after ``cancel()`` returns; ``session.ended {terminated}`` on terminate; and the resolution of
  requests left pending by an agent process that died with a server.
- the adapter: everything the agent says during a turn (items, deltas, ``permission.requested``,
  ``question.requested``, ``error``, ``agent.unparsed``), the ``.resolved`` event of a HITL reply
  once the agent accepted it, ``turn.ended`` when the agent finishes a turn by itself
  (``completed`` or ``error``), and ``session.ended`` when the agent ends or crashes.

Rules of the contract:

- ``start(session, resume)`` starts or attaches to the agent; ``resume`` is the native session id
  of a session that existed before (server restart), so the agent continues natively where it can.
  It emits nothing. Afterwards ``native_session_id`` holds the agent's id once known.
- ``start_fork(session, source)`` starts the agent of a forked session instead of ``start``: on a
  native copy of ``source`` when the agent can fork its sessions (True), else afresh (False).
- ``send(prompt, attachments)`` begins a turn and returns as soon as the agent took the prompt;
  the output follows through the sink and ends with ``turn.ended`` (or ``session.ended``). A
  second ``send`` while a turn runs raises ``TurnInProgress`` (the session layer checks first).
- ``cancel()`` interrupts the running turn, if any, and returns only when the adapter will emit
  nothing more for that turn; it emits no ``turn.ended`` itself: the session layer writes
  ``turn.ended {reason: cancelled}``. Pending permissions and questions stay answerable. Do not
  call it from inside the sink.
- ``reply_permission`` / ``reply_question`` / ``reject_question`` forward a HITL answer and then
  emit its ``.resolved`` draft (source ``client``); if forwarding fails they raise and the request
  stays pending. An id that is not pending raises ``UnknownRequest``.
- ``stop()`` ends the agent for good, child processes included; idempotent.
- Every native message is mapped, deliberately ignored (a documented list per adapter) or emitted
  as ``agent.unparsed`` with the raw payload; stderr goes to the log, never to the parser.

To write an adapter, subclass ``AgentAdapter``, set ``id`` and ``capabilities``, implement the
abstract methods, and run the shared suite (``tests/agent_contract.py``) against it. Example::

    class EchoAgent(AgentAdapter):
        id = "echo"
        capabilities = AgentCapabilities(text_messages=True)

        async def send(self, prompt, attachments=()):
            item = UniversalItem(item_id="echo_1", role="assistant", status="completed",
                                 content=[TextPart(text=prompt)])
            await self.emit(EventDraft(type="item.completed", data=ItemEventData(item=item)),
                            turn_ended_draft("completed"))
        ...
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from sandbox_agent.agents.mcp import McpLocalServer, McpRemoteServer, parse_mcp_servers
from sandbox_agent.events import Attachment as Attachment  # part of the contract: send()
from sandbox_agent.events import EventDraft, PermissionData

EventSink = Callable[[Sequence[EventDraft]], Awaitable[None]]
"""Where an adapter sends its drafts: the session layer's normalise-and-append."""

PermissionReply = Literal["once", "always", "reject"]


class _CamelModel(BaseModel):
    # Wire names are the v0.1 camelCase ones; Python code uses snake_case.
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True, frozen=True
    )


class AgentCapabilities(_CamelModel):
    """What an agent can do: the v0.1 flags (``GET /v1/agents``), all false unless set."""

    plan_mode: bool = False
    permissions: bool = False
    questions: bool = False
    tool_calls: bool = False
    tool_results: bool = False
    text_messages: bool = False
    images: bool = False
    file_attachments: bool = False
    session_lifecycle: bool = False
    error_events: bool = False
    reasoning: bool = False
    status: bool = False
    command_execution: bool = False
    file_changes: bool = False
    mcp_tools: bool = False
    streaming_deltas: bool = False
    item_started: bool = False
    variants: bool = False
    shared_process: bool = False


class AgentMode(_CamelModel):
    """One entry of ``GET /v1/agents/{agent}/modes``."""

    id: str
    name: str
    description: str = ""


class AgentModel(_CamelModel):
    """One model of ``GET /v1/agents/{agent}/models``."""

    id: str
    name: str | None = None
    variants: list[str] | None = None
    default_variant: str | None = None


class AgentModels(_CamelModel):
    """The body of ``GET /v1/agents/{agent}/models``."""

    models: list[AgentModel] = Field(default_factory=list)
    default_model: str | None = None


class AgentSessionConfig(BaseModel):
    """What an adapter needs to know about its session (the normalised create request)."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    agent: str
    agent_mode: str = "build"
    permission_mode: str = "default"
    model: str | None = None
    variant: str | None = None
    #: The agent's working directory (None: the server's root).
    directory: str | None = None
    title: str | None = None
    #: The session's MCP servers (the request's ``mcp`` map, parsed: ``mcp.parse_mcp_servers``,
    #: which raises ``InvalidMcpConfig``).
    mcp: dict[str, McpLocalServer | McpRemoteServer] | None = None
    skills: dict[str, Any] | None = None
    #: Turns already in the stored stream (on resume), so that adapters numbering their ids per
    #: turn (the mock's ``mock_<n>_...``) stay unique within the session.
    prior_turns: int = Field(default=0, ge=0)
    #: The session's permissions answered ``always`` so far (on resume, from the stored stream):
    #: the adapter remembers them as if it had been answered here.
    always: list[PermissionData] = Field(default_factory=list)

    @field_validator("mcp", mode="before")
    @classmethod
    def _parse_mcp(cls, value: Any) -> Any:
        # InvalidMcpConfig is no ValueError: it leaves the constructor as itself.
        return None if value is None else parse_mcp_servers(value)


class AgentAdapter(abc.ABC):
    """One session's agent. See the module docstring for the contract."""

    #: The agent id (``claude``, ``codex``, ``opencode``, ``amp``, ``mock``, ``acp:<name>``).
    id: str
    capabilities: AgentCapabilities

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        #: The agent's own session id, once known (Claude session id, Codex thread id, ...).
        self.native_session_id: str | None = None

    async def emit(self, *drafts: EventDraft) -> None:
        """Hand drafts to the sink; returns once they are stored."""
        if drafts:
            await self._sink(drafts)

    @abc.abstractmethod
    async def modes(self) -> list[AgentMode]:
        """The agent modes a session may ask for; works before ``start()``."""

    @abc.abstractmethod
    async def models(self) -> AgentModels:
        """The models a session may ask for; works before ``start()``."""

    @abc.abstractmethod
    async def start(self, session: AgentSessionConfig, resume: str | None = None) -> None:
        """Start or attach to the agent; ``resume`` is a native session id to continue."""

    async def start_fork(self, session: AgentSessionConfig, source: str) -> bool:
        """Start the agent on a native copy of the native session ``source`` (a session forked
        at the end of its stream), leaving ``source`` untouched. True when it did; False when
        the agent cannot fork natively (this default) and started afresh instead: the session
        layer then restores the conversation by replay. Emits nothing."""
        await self.start(session)
        return False

    @abc.abstractmethod
    async def send(self, prompt: str, attachments: Sequence[Attachment] = ()) -> None:
        """Begin a turn; returns once the agent took the prompt."""

    @abc.abstractmethod
    async def cancel(self) -> None:
        """Interrupt the running turn (no-op when none); emits nothing more for it."""

    @abc.abstractmethod
    async def reply_permission(self, permission_id: str, reply: PermissionReply) -> None:
        """Forward a permission answer, then emit ``permission.resolved``."""

    @abc.abstractmethod
    async def reply_question(self, question_id: str, answers: list[list[str]]) -> None:
        """Forward the answers (a list of labels per question), then emit ``question.resolved``."""

    @abc.abstractmethod
    async def reject_question(self, question_id: str) -> None:
        """Forward a refusal to answer, then emit ``question.resolved {rejected}``."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """End the agent for good, child processes included. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
