"""The session engine: sessions' lifecycle over a store and agent adapters, with no HTTP in it.

``SessionEngine`` (``engine.py``) creates, finds, recovers and removes sessions; each is a
``LiveSession`` (``session.py``) with its append pipeline (``normaliser.py``), its live state
(the replay reducer) and its agent. The server's routes and the CLI call these; errors are the
domain errors of ``errors.py``.
"""

from sandbox_agent.sessions.config import SessionConfig, TurnLimits
from sandbox_agent.sessions.drafts import prompt_drafts
from sandbox_agent.sessions.engine import SessionEngine
from sandbox_agent.sessions.errors import (
    AgentNotInstalled,
    AgentProcessExited,
    FsError,
    InstallFailed,
    InvalidSessionRequest,
    PathOutsideRoot,
    QueueFull,
    RequestNotFound,
    SessionError,
    TurnInProgress,
)
from sandbox_agent.sessions.normaliser import Normaliser
from sandbox_agent.sessions.session import LiveSession
from sandbox_agent.sessions.skills import InstalledSkill, SkillsError, SkillSource

__all__ = [
    "AgentNotInstalled",
    "AgentProcessExited",
    "FsError",
    "InstallFailed",
    "InstalledSkill",
    "InvalidSessionRequest",
    "LiveSession",
    "Normaliser",
    "PathOutsideRoot",
    "QueueFull",
    "RequestNotFound",
    "SessionConfig",
    "SessionEngine",
    "SessionError",
    "SkillSource",
    "SkillsError",
    "TurnInProgress",
    "TurnLimits",
    "prompt_drafts",
]
