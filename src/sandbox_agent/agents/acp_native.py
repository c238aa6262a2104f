"""Our native adapters presented as an ACP agent, for the ACP endpoint (``docs/acp.md``).

``NativeAcpPeer`` is an ``AcpPeer`` (``acp_relay.py``) in process: it answers the ACP requests a
client sends with calls on one ``AgentAdapter`` per ACP session (claude stream-json, codex
app-server, opencode serve, amp), and turns the drafts each adapter emits into the envelopes an
ACP agent writes. So an ACP client gets these agents as it gets an ACP agent process.

Requests:

- ``initialize`` -> protocol 1, ``loadSession``; ``session/new {cwd}`` -> a new adapter started
  in ``cwd`` (default: the endpoint's directory), its id the adapter's native session id when it
  has one at start (claude, codex, opencode), else ``<agent>-<hex>``; ``session/load
  {sessionId}`` -> an adapter resuming that native session; ``session/prompt {sessionId,
  prompt}`` -> ``send`` of its text blocks; the answer comes at the turn's end;
  ``session/set_mode``, ``session/set_model`` -> ``{}`` (the session keeps its modes); anything
  else -> JSON-RPC error -32601.
- ``session/cancel`` (notification) -> ``cancel``, then the prompt's answer ``{stopReason:
  cancelled}``.

What the adapter emits, as ``session/update`` notifications of the session:

- an assistant message's ``item.delta`` -> ``agent_message_chunk``, a reasoning item's ->
  ``agent_thought_chunk``; a message or reasoning item completed without deltas -> one chunk
  with its text;
- a ``tool_call`` item -> ``tool_call {toolCallId, title, kind: other, status: in_progress,
  rawInput}``, its input changed later -> ``tool_call_update {rawInput}``; its ``tool_result``
  item -> ``tool_call_update {status: completed|failed, content}``;
- ``permission.requested`` -> the agent's request ``session/request_permission`` (options
  ``allow_once``, ``allow_always``, ``reject_once``; its ``toolCallId`` the call it is about when
  announced); the client's answer -> ``reply_permission`` (``once``, ``always``, ``reject``;
  ``cancelled`` -> ``reject``);
- ``question.requested`` -> rejected at once (ACP has no questions);
- ``turn.ended`` -> the answer to the prompt: ``{stopReason: end_turn}`` (``cancelled`` for a
  cancelled turn), a JSON-RPC error (-32603, the turn's ``error`` message) for ``error``;
  ``session.ended`` during a turn -> the same error (the adapter starts again at the next
  prompt, resuming its native session).

Everything else (status items, ``agent.unparsed``, user items) is not sent: the adapter's own
stream is not kept here; the endpoint stores the envelopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox_agent.agents.acp_relay import Deliver
from sandbox_agent.agents.base import AgentAdapter, AgentSessionConfig, PermissionReply
from sandbox_agent.agents.registry import create_adapter
from sandbox_agent.agents.settings import AgentSettings
from sandbox_agent.events import EventDraft

logger = logging.getLogger(__name__)

#: The adapters an ACP client may reach this way (``native:<agent>``, ``docs/acp.md``; the
#: mock's, ``native:mock``, is how the tests drive this translation without a real agent).
NATIVE_AGENTS = ("claude", "codex", "opencode", "amp", "mock")
NATIVE_PREFIX = "native:"

_OPTIONS = [
    {"optionId": "allow_once", "name": "Allow once", "kind": "allow_once"},
    {"optionId": "allow_always", "name": "Always allow", "kind": "allow_always"},
    {"optionId": "reject_once", "name": "Reject", "kind": "reject_once"},
]
_REPLIES: dict[str, PermissionReply] = {
    "allow_once": "once",
    "allow_always": "always",
    "reject_once": "reject",
}


@dataclass
class _Session:
    session_id: str
    adapter: AgentAdapter | None = None
    #: The id of the ``session/prompt`` request whose turn runs.
    prompt: Any = None
    #: The turn's ``error`` messages (the answer to an errored turn).
    errors: list[str] = field(default_factory=list)
    #: Item kinds by id, and the items that streamed deltas (their completion adds nothing).
    kinds: dict[str, str] = field(default_factory=dict)
    streamed: set[str] = field(default_factory=set)
    #: The tool calls sent, with the input last sent for each (an agent may fill it in later).
    announced: dict[str, Any] = field(default_factory=dict)


def _rpc_result(request_id: Any, result: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def _rpc_error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _text(parts: Sequence[dict[str, Any]], kind: str) -> str:
    return "".join(str(p.get("text", "")) for p in parts if p.get("type") == kind)


class NativeAcpPeer:
    """One of our adapters as an ACP agent (one adapter per ACP session)."""

    def __init__(
        self, agent: str, settings: AgentSettings, directory: str, deliver: Deliver
    ) -> None:
        self.agent = agent
        self._settings = settings
        self._directory = directory
        self._deliver = deliver
        self._sessions: dict[str, _Session] = {}
        #: Our ``session/request_permission`` requests: id -> (session, permission id).
        self._asked: dict[str, tuple[_Session, str]] = {}
        self._ids = itertools.count(1)
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._run(), name=f"native ACP {agent}")

    @property
    def alive(self) -> bool:
        return not self._task.done()

    async def send(self, message: dict[str, Any]) -> None:
        if self._task.done():
            raise ConnectionResetError(f"{self.agent} (native ACP): closed")
        self._inbox.put_nowait(message)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        for task in list(self._tasks):
            task.cancel()
        for session in self._sessions.values():
            if session.adapter is not None:
                with contextlib.suppress(Exception):
                    await session.adapter.stop()

    # -- the client's envelopes ----------------------------------------------------------
    async def _run(self) -> None:
        while True:
            message = await self._inbox.get()
            # One at a time, in order; a prompt returns once the agent took it (its answer
            # comes at the turn's end), so a cancel or a permission answer is never stuck
            # behind it.
            try:
                await self._handle(message)
            except Exception as exc:
                logger.warning("%s (native ACP): %r failed", self.agent, message.get("method"))
                if "id" in message and "method" in message:
                    await self._deliver(_rpc_error(message["id"], -32603, str(exc) or repr(exc)))

    async def _handle(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        assert isinstance(params, dict)
        if not isinstance(method, str):
            if "id" in message:
                self._spawn(self._answered(message))
            return
        if "id" not in message:
            if method == "session/cancel":
                session = self._sessions.get(str(params.get("sessionId")))
                if session is not None:
                    self._spawn(self._cancel(session))
            return
        request_id = message["id"]
        if method == "initialize":
            result: dict[str, Any] = {
                "protocolVersion": 1,
                "agentCapabilities": {"loadSession": True},
                "authMethods": [],
                "agentInfo": {"name": f"sandbox-agent {self.agent}", "version": "1"},
            }
        elif method in ("session/new", "session/load"):
            result = await self._open(params, load=method == "session/load")
        elif method == "session/prompt":
            session = self._sessions.get(str(params.get("sessionId")))
            if session is None:
                await self._deliver(_rpc_error(request_id, -32602, "unknown sessionId"))
                return
            await self._prompt(session, request_id, params)
            return
        elif method in ("session/set_mode", "session/set_model"):
            result = {}
        else:
            await self._deliver(_rpc_error(request_id, -32601, f"method not found: {method}"))
            return
        await self._deliver(_rpc_result(request_id, result))

    async def _open(self, params: dict[str, Any], *, load: bool) -> dict[str, Any]:
        resume = str(params["sessionId"]) if load and params.get("sessionId") else None
        session = _Session(session_id=resume or "")
        directory = str(params.get("cwd") or self._directory)

        async def sink(drafts: Sequence[EventDraft]) -> None:
            await self._emitted(session, drafts)

        adapter = create_adapter(self.agent, sink, self._settings)
        config = AgentSessionConfig(
            session_id=resume or f"{self.agent}-{secrets.token_hex(6)}",
            agent=self.agent,
            directory=directory,
        )
        await adapter.start(config, resume=resume)
        session.adapter = adapter
        session.session_id = resume or adapter.native_session_id or config.session_id
        self._sessions[session.session_id] = session
        return {} if load else {"sessionId": session.session_id}

    async def _prompt(self, session: _Session, request_id: Any, params: dict[str, Any]) -> None:
        adapter = session.adapter
        assert adapter is not None
        if session.prompt is not None:
            await self._deliver(_rpc_error(request_id, -32600, "a prompt is still running"))
            return
        blocks = params.get("prompt") if isinstance(params.get("prompt"), list) else []
        text = "\n".join(
            str(b.get("text", "")) for b in blocks or [] if isinstance(b, dict) and "text" in b
        )
        session.prompt, session.errors = request_id, []
        try:
            await adapter.send(text)
        except Exception as exc:
            session.prompt = None
            await self._deliver(_rpc_error(request_id, -32603, f"the agent did not take it: {exc}"))

    async def _cancel(self, session: _Session) -> None:
        if session.adapter is None or session.prompt is None:
            return
        await session.adapter.cancel()
        await self._finish(session, {"stopReason": "cancelled"})

    async def _answered(self, message: dict[str, Any]) -> None:
        """The client's answer to our ``session/request_permission``."""
        asked = self._asked.pop(str(message.get("id")), None)
        if asked is None:
            return
        session, permission_id = asked
        result = message.get("result")
        outcome = result.get("outcome") if isinstance(result, dict) else None
        reply: PermissionReply = "reject"
        if isinstance(outcome, dict) and outcome.get("outcome") == "selected":
            reply = _REPLIES.get(str(outcome.get("optionId")), "reject")
        if session.adapter is not None:
            await session.adapter.reply_permission(permission_id, reply)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                logger.warning("%s (native ACP): %r", self.agent, finished.exception())

        task.add_done_callback(done)

    # -- what the adapter says -----------------------------------------------------------
    async def _emitted(self, session: _Session, drafts: Sequence[EventDraft]) -> None:
        for draft in drafts:
            for update in self._updates(session, draft):
                await self._deliver(
                    {
                        "jsonrpc": "2.0",
                        "method": "session/update",
                        "params": {"sessionId": session.session_id, "update": update},
                    }
                )
            if draft.type == "permission.requested":
                await self._ask(session, draft.data)
            elif draft.type == "question.requested" and session.adapter is not None:
                question_id = str(draft.data.get("question_id"))
                self._spawn(session.adapter.reject_question(question_id))
            elif draft.type == "error":
                session.errors.append(str(draft.data.get("message") or "error"))
            elif draft.type == "turn.ended":
                reason = draft.data.get("reason")
                if reason == "error":
                    await self._fail(session, "; ".join(session.errors) or "the turn failed")
                else:
                    stop = "cancelled" if reason == "cancelled" else "end_turn"
                    await self._finish(session, {"stopReason": stop})
            elif draft.type == "session.ended":
                message = draft.data.get("message") or "the agent ended the session"
                await self._fail(session, "; ".join([*session.errors, str(message)]))

    def _updates(self, session: _Session, draft: EventDraft) -> list[dict[str, Any]]:
        data = draft.data
        if draft.type == "item.delta":
            item_id = str(data.get("item_id"))
            kind = session.kinds.get(item_id, "message")
            if kind not in ("message", "reasoning"):
                return []
            session.streamed.add(item_id)
            return [_chunk(kind, str(data.get("delta", "")))]
        if draft.type not in ("item.started", "item.completed"):
            return []
        item = data.get("item") or {}
        item_id, kind = str(item.get("item_id")), str(item.get("kind"))
        parts = [p for p in item.get("content") or [] if isinstance(p, dict)]
        if item.get("role") == "user":
            return []
        session.kinds[item_id] = kind
        if kind == "tool_call":
            return self._tool_call(session, parts)
        if draft.type == "item.started":
            return []
        if kind in ("message", "reasoning") and item_id not in session.streamed:
            text = _text(parts, "text" if kind == "message" else "reasoning") or _text(
                parts, "text"
            )
            return [_chunk(kind, text)] if text else []
        if kind == "tool_result":
            updates = []
            for part in parts:
                if part.get("type") != "tool_result":
                    continue
                status = "failed" if item.get("status") == "failed" else "completed"
                output = {"type": "text", "text": str(part.get("output", ""))}
                updates.append(
                    {
                        "sessionUpdate": "tool_call_update",
                        "toolCallId": str(part.get("call_id")),
                        "status": status,
                        "content": [{"type": "content", "content": output}],
                    }
                )
            return updates
        return []

    def _tool_call(self, session: _Session, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        updates: list[dict[str, Any]] = []
        for part in parts:
            if part.get("type") != "tool_call":
                continue
            call_id, raw_input = str(part.get("call_id")), _arguments(part.get("arguments"))
            if call_id in session.announced:
                # OpenCode starts a call with an empty input and fills it in when it runs.
                if raw_input != session.announced[call_id]:
                    session.announced[call_id] = raw_input
                    updates.append(
                        {
                            "sessionUpdate": "tool_call_update",
                            "toolCallId": call_id,
                            "rawInput": raw_input,
                        }
                    )
                continue
            session.announced[call_id] = raw_input
            updates.append(
                {
                    "sessionUpdate": "tool_call",
                    "toolCallId": call_id,
                    "title": str(part.get("name")),
                    "kind": "other",
                    "status": "in_progress",
                    "rawInput": raw_input,
                }
            )
        return updates

    async def _ask(self, session: _Session, data: dict[str, Any]) -> None:
        request_id = f"perm_{next(self._ids)}"
        permission_id = str(data.get("permission_id"))
        self._asked[request_id] = (session, permission_id)
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        assert isinstance(metadata, dict)
        await self._deliver(
            {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "session/request_permission",
                "params": {
                    "sessionId": session.session_id,
                    "toolCall": {
                        "toolCallId": _call_of(session, metadata) or permission_id,
                        "title": str(data.get("action")),
                        "rawInput": metadata.get("input", metadata),
                    },
                    "options": _OPTIONS,
                },
            }
        )

    async def _finish(self, session: _Session, result: dict[str, Any]) -> None:
        request_id, session.prompt = session.prompt, None
        if request_id is not None:
            await self._deliver(_rpc_result(request_id, result))

    async def _fail(self, session: _Session, message: str) -> None:
        request_id, session.prompt = session.prompt, None
        if request_id is not None:
            await self._deliver(_rpc_error(request_id, -32603, message))


def _call_of(session: _Session, metadata: dict[str, Any]) -> str | None:
    """The tool call a permission is about, when the client was told of it: claude's
    ``toolUseId``, codex's ``itemId``, OpenCode's ``tool.callID``."""
    tool = metadata.get("tool") if isinstance(metadata.get("tool"), dict) else {}
    assert isinstance(tool, dict)
    for call_id in (metadata.get("toolUseId"), metadata.get("itemId"), tool.get("callID")):
        if call_id is not None and str(call_id) in session.announced:
            return str(call_id)
    return None


def _chunk(kind: str, text: str) -> dict[str, Any]:
    update = "agent_thought_chunk" if kind == "reasoning" else "agent_message_chunk"
    return {"sessionUpdate": update, "content": {"type": "text", "text": text}}


def _arguments(value: Any) -> Any:
    import json

    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
