"""What a new session is made of: ``SessionConfig``, plain data with no HTTP in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SessionConfig:
    """A session to create. ``None`` means the default: agent mode ``build``, permission mode
    ``default``, the agent's default model, the engine's root as the directory."""

    agent: str
    agent_mode: str | None = None
    permission_mode: str | None = None
    model: str | None = None
    variant: str | None = None
    agent_version: str | None = None
    directory: str | None = None
    title: str | None = None
    mcp: Any = None
    skills: Any = None
    #: ``{"turns", "nextItem", ...}`` of a session restored by replay from another stream.
    continue_from: dict[str, Any] | None = None

    def init(self) -> dict[str, Any]:
        """What the session row keeps for later starts of the agent (``SessionRecord.init``)."""
        values = {
            "mcp": self.mcp,
            "skills": self.skills,
            "agentVersion": self.agent_version,
            "continueFrom": self.continue_from,
        }
        return {key: value for key, value in values.items() if value is not None}


#: Seconds ``cancel`` waits for the agent to stop a turn before it stops the agent's process.
DEFAULT_CANCEL_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class TurnLimits:
    """Bounds on every session's turns (the engine's, ``SessionEngine(turn_limits=...)``).

    ``idle_timeout``: seconds a turn may go without a word from the agent (no event at all)
    before it ends with ``error {code: turn_idle_timeout}`` and ``turn.ended {error}`` and the
    agent's process is stopped (the next prompt starts it again). Time waiting for an answer
    to a permission or a question does not count. None (the default): no bound.

    ``cancel_grace``: seconds ``cancel`` waits for the agent to end the turn before it stops
    the agent's process and ends the turn itself (``turn.ended {cancelled}`` with
    ``metadata.agentStopped: true``)."""

    idle_timeout: float | None = None
    cancel_grace: float = DEFAULT_CANCEL_GRACE_SECONDS

    def __post_init__(self) -> None:
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ValueError(f"idle_timeout must be > 0 seconds, not {self.idle_timeout}")
        if not self.cancel_grace >= 0:
            raise ValueError(f"cancel_grace must be >= 0 seconds, not {self.cancel_grace}")
