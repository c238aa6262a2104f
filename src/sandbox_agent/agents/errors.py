"""Errors of the agent adapters. Every one is an ``AgentError``."""

from __future__ import annotations

from typing import Literal


class AgentError(Exception):
    """Base of every error an adapter or the agent registry raises."""


class UnsupportedAgent(AgentError):
    """The agent id is unknown (a name neither built in nor configured)."""

    def __init__(self, agent_id: str, reason: str) -> None:
        super().__init__(f"unsupported agent {agent_id!r}: {reason}")
        self.agent_id = agent_id


class AgentNotStarted(AgentError):
    """A call that needs a running adapter came before ``start()`` or after ``stop()``."""


class TurnInProgress(AgentError):
    """``send()`` while a turn is still running (or waiting on a permission or a question)."""


class UnknownRequest(AgentError):
    """A reply names a permission or question that is not pending (never asked, or answered)."""

    def __init__(self, kind: Literal["permission", "question"], request_id: str) -> None:
        super().__init__(f"unknown {kind} id: {request_id}")
        self.kind = kind
        self.request_id = request_id


class ModeNotSupported(AgentError):
    """The agent does not take this agent mode or permission mode (v0.1 ``mode_not_supported``)."""

    def __init__(self, agent: str, mode: str) -> None:
        super().__init__(f"mode not supported: {agent} {mode}")
        self.agent = agent
        self.mode = mode


class InvalidMode(AgentError):
    """A permission mode that is none of ``default``, ``plan``, ``bypass``, ``acceptEdits``."""

    def __init__(self, mode: str) -> None:
        super().__init__(f"invalid permission mode: {mode}")
        self.mode = mode


class InvalidMcpConfig(AgentError):
    """A session's ``mcp`` map, or one server of it (``name``), is not a valid MCP config."""

    def __init__(self, name: str | None, reason: str) -> None:
        where = "mcp" if name is None else f"mcp server {name!r}"
        super().__init__(f"invalid {where}: {reason}")
        self.name = name
        self.reason = reason
