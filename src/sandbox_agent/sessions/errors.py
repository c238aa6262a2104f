"""Errors of the session engine. Every one is a ``SessionError``; the server maps each to its
problem+json (``server/errors.py``), other callers read the attributes.

The engine also lets through the store's ``SessionNotFound``/``SessionExists`` and the agents'
``UnsupportedAgent``/``ModeNotSupported``: those say the same thing at their own layer.
"""

from __future__ import annotations

from typing import Literal


class SessionError(Exception):
    """Base of every error the session engine raises itself."""


class InvalidSessionRequest(SessionError):
    """The call cannot be made on this session as it is (a bad directory, a terminated session,
    an ended one). ``reason`` is the short form, e.g. ``session terminated``."""

    def __init__(self, reason: str, session_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.session_id = session_id


class PathOutsideRoot(SessionError):
    """A session's ``directory`` outside the server's root, an attachment outside the
    session's directory, or a filesystem API path (``path``) or tar entry (``entry``) outside
    the root, once resolved with its symlinks (``paths.py``, ``files.py``). ``what`` says which;
    ``path`` is the path as given."""

    def __init__(
        self, what: Literal["directory", "attachment", "path", "entry"], path: str
    ) -> None:
        where = "the session's directory" if what == "attachment" else "the server's root"
        super().__init__(f"{what} outside {where}: {path}")
        self.what = what
        self.path = path


class TurnInProgress(SessionError):
    """A prompt with ``if_idle`` while a turn runs."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            "a turn is still running in this session: wait for its turn.ended, or cancel it"
        )
        self.session_id = session_id


class QueueFull(SessionError):
    """A prompt while ``limit`` prompts already wait behind the running turn."""

    def __init__(self, session_id: str, limit: int) -> None:
        super().__init__(f"{limit} prompts already wait in this session's queue")
        self.session_id = session_id
        self.limit = limit


class RequestNotFound(SessionError):
    """A reply names a permission or question that is not pending, or a cancel names a queued
    prompt that is not waiting."""

    def __init__(
        self,
        kind: Literal["permission", "question", "queued_prompt"],
        request_id: str,
        session_id: str,
    ) -> None:
        super().__init__(f"unknown {kind.replace('_', ' ')} id: {request_id}")
        self.kind = kind
        self.request_id = request_id
        self.session_id = session_id


class AgentNotInstalled(SessionError):
    def __init__(self, agent: str) -> None:
        super().__init__(f"agent not installed: {agent}")
        self.agent = agent


class InstallFailed(SessionError):
    def __init__(self, agent: str, reason: str) -> None:
        super().__init__(f"install failed: {agent}: {reason}")
        self.agent = agent
        self.reason = reason


class AgentProcessExited(SessionError):
    """The agent did not take a prompt (its process is gone); the turn was closed with an
    ``error`` event and ``turn.ended {error}``."""

    def __init__(self, agent: str) -> None:
        super().__init__(f"agent process exited: {agent}")
        self.agent = agent


class FsError(SessionError):
    """A filesystem API call that cannot be done (``files.py``). ``kind``: ``not_found``,
    ``exists`` (a move's destination), ``not_empty`` (a delete without ``recursive``),
    ``invalid`` (the wrong kind of entry, a name too long, a bad archive), ``denied`` (the
    operating system's permissions), ``too_large`` (over ``limit``), ``io`` (any other error of
    the operating system). ``path`` as given."""

    def __init__(
        self,
        kind: Literal["not_found", "exists", "not_empty", "invalid", "denied", "too_large", "io"],
        message: str,
        path: str | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.path = path
        self.limit = limit
