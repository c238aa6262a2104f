"""ACP agents as raw JSON-RPC peers, for the ACP endpoint (``/v1/acp``, ``docs/acp.md``).

The ACP adapter (``acp.py``) speaks ACP itself; the endpoint only relays envelopes between an
HTTP client and an agent. An ``AcpPeer`` takes envelopes with ``send`` and hands every envelope
the agent writes to ``deliver`` (awaited, one at a time, in the agent's order, so the caller
can store each before the next arrives).

- ``MockAcpPeer``: the mock agent answering ACP, in process, as upstream's test mock does:
  ``initialize`` -> protocol 1 (``loadSession``), ``session/new`` -> ``mock-session-<n>``,
  ``session/load`` -> ``{}``, ``session/prompt`` -> one ``session/update`` notification
  (``agent_message_chunk`` "mock: <text>") then ``{stopReason: "end_turn"}``, any other request
  -> ``{ok: true, echoedMethod}``; notifications and responses are ignored.
- ``ProcessAcpPeer``: an ACP agent process (``acp:claude``, ``--acp-agent`` ones ...), JSON
  lines on its stdio. A stdout line that is not a JSON object becomes the notification
  ``_adapter/invalid_stdout {error, raw}``; its exit, ``_adapter/agent_exited {success, code}``
  (upstream's names).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from sandbox_agent.agents.environment import agent_environment
from sandbox_agent.agents.process import AgentProcess
from sandbox_agent.agents.settings import AgentSettings

logger = logging.getLogger(__name__)

Deliver = Callable[[dict[str, Any]], Awaitable[None]]

#: Longest ``raw`` kept in an ``_adapter/invalid_stdout`` notification.
MAX_INVALID_STDOUT_CHARS = 4096


class AcpPeer(Protocol):
    """One agent behind an ACP server id."""

    async def send(self, message: dict[str, Any]) -> None:
        """Hand one envelope to the agent; ``ConnectionError`` once it is gone."""

    async def close(self) -> None:
        """Stop the agent (no more ``deliver`` calls once this returns)."""

    @property
    def alive(self) -> bool: ...


def exited_notification(code: int | None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "_adapter/agent_exited",
        "params": {"success": code == 0, "code": code},
    }


class MockAcpPeer:
    """The mock agent, answering ACP in process (no delay: replies are queued, then delivered
    in order by one task, as a process's stdout would be)."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._sessions = 0
        self._task = asyncio.create_task(self._run(), name="mock ACP agent")

    @property
    def alive(self) -> bool:
        return not self._task.done()

    async def send(self, message: dict[str, Any]) -> None:
        if self._task.done():
            raise ConnectionResetError("mock ACP agent: closed")
        self._inbox.put_nowait(message)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task

    async def _run(self) -> None:
        while True:
            message = await self._inbox.get()
            for reply in self.answer(message):
                try:
                    await self._deliver(reply)
                except Exception:
                    logger.exception("mock ACP agent: delivering a reply failed")

    def answer(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        method = message.get("method")
        if not isinstance(method, str) or "id" not in message:
            return []  # a notification, or the client's answer to a request of ours
        request_id = message["id"]
        params = message.get("params") if isinstance(message.get("params"), dict) else {}
        assert isinstance(params, dict)
        result: dict[str, Any]
        out: list[dict[str, Any]] = []
        if method == "initialize":
            result = {
                "protocolVersion": 1,
                "agentCapabilities": {"loadSession": True},
                "authMethods": [],
                "agentInfo": {"name": "mock", "version": "1"},
            }
        elif method == "session/new":
            self._sessions += 1
            result = {"sessionId": f"mock-session-{self._sessions}"}
        elif method == "session/load":
            result = {}
        elif method == "session/prompt":
            text = " ".join(
                block.get("text", "")
                for block in params.get("prompt") or []
                if isinstance(block, dict) and block.get("type") == "text"
            )
            update = {
                "sessionUpdate": "agent_message_chunk",
                "content": {"type": "text", "text": f"mock: {text}"},
            }
            out.append(
                {
                    "jsonrpc": "2.0",
                    "method": "session/update",
                    "params": {"sessionId": params.get("sessionId"), "update": update},
                }
            )
            result = {"stopReason": "end_turn"}
        else:
            result = {"ok": True, "echoedMethod": method}
        out.append({"jsonrpc": "2.0", "id": request_id, "result": result})
        return out


class ProcessAcpPeer:
    """An ACP agent process; use ``await ProcessAcpPeer.spawn(...)``."""

    def __init__(self, process: AgentProcess, deliver: Deliver) -> None:
        self._process = process
        self._deliver = deliver
        self._task = asyncio.create_task(self._read(), name=f"ACP relay {process.argv[0]}")

    @classmethod
    async def spawn(
        cls,
        agent_id: str,
        argv: list[str],
        *,
        settings: AgentSettings,
        directory: str,
        log_name: str,
        deliver: Deliver,
    ) -> ProcessAcpPeer:
        """Start ``argv``; ``OSError`` when it cannot be started."""
        env = agent_environment(agent_id, directory, dict(settings.extra_env))
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in agent_id)
        log_path = Path(settings.logs()) / safe / f"{log_name}.log"
        process = await AgentProcess.spawn(argv, cwd=directory, env=env, log_path=log_path)
        return cls(process, deliver)

    @property
    def alive(self) -> bool:
        return self._process.returncode is None and not self._task.done()

    async def send(self, message: dict[str, Any]) -> None:
        await self._process.write_json(message)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        await self._process.stop()

    async def _read(self) -> None:
        async for line in self._process.lines():
            message: Any
            try:
                message = json.loads(line)
            except ValueError as exc:
                message = None
                error = f"invalid JSON: {exc}"
            else:
                error = "not a JSON object"
            if not isinstance(message, dict):
                text = line.decode(errors="replace")[:MAX_INVALID_STDOUT_CHARS]
                message = {
                    "jsonrpc": "2.0",
                    "method": "_adapter/invalid_stdout",
                    "params": {"error": error, "raw": text},
                }
            await self._deliver_safely(message)
        code = await self._process.wait()
        await self._deliver_safely(exited_notification(code))

    async def _deliver_safely(self, message: dict[str, Any]) -> None:
        try:
            await self._deliver(message)
        except Exception:
            logger.exception("ACP relay: delivering a message of %s failed", self._process.argv[0])
