"""The session layer: one ``LiveSession`` per session, kept by the ``SessionManager``."""

from sandbox_agent.server.sessions.manager import SessionManager
from sandbox_agent.server.sessions.session import LiveSession

__all__ = ["LiveSession", "SessionManager"]
