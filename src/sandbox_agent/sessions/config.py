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
