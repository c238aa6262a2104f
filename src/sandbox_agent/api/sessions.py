"""The bodies of ``/v1/sessions``: create, list, get, messages, events, HITL replies.

Events themselves (``UniversalEvent``) stay snake_case; these are only their wrappers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sandbox_agent.api.base import ApiModel, Id
from sandbox_agent.events import Attachment


class HealthResponse(ApiModel):
    status: Literal["ok"] = "ok"


class ContinueFrom(ApiModel):
    """Ours: where a session restored by replay on a new sandbox continues its numbering, so
    that its item ids and turn numbers never repeat those of the stream it continues."""

    #: Turns the continued stream had.
    turns: int = Field(0, ge=0)
    #: The first ``itm_<n>`` this server may give.
    next_item: int = Field(1, ge=1)


class SkillSource(ApiModel):
    """One source of a session's skills (v0.1): ``local`` (a directory on the server's machine,
    relative to the session's directory), ``git`` (any URL or path ``git clone`` takes) or
    ``github`` (``owner/repo``, cloned from github.com)."""

    type: Literal["local", "git", "github"]
    source: str = Field(min_length=1)
    #: Only these skills (directory names); unset: every skill found.
    skills: list[str] | None = None
    #: A branch or tag (``git``, ``github``).
    ref: str | None = None
    #: Where in the source to look for skills.
    subpath: str | None = None


class SkillsConfig(ApiModel):
    """``skills`` of ``CreateSessionRequest``."""

    sources: list[SkillSource] = Field(default_factory=list)


class InstalledSkill(ApiModel):
    """A skill a session got (``SessionInfo.installedSkills``)."""

    name: str
    type: str
    #: The source as the request named it.
    source: str
    #: The skill's real directory on the server (in the clone cache for git sources).
    path: str
    #: The links made to it in the session's directory (``.agents/skills/<name>``, the agent's).
    links: list[str] = Field(default_factory=list)


class CreateSessionRequest(ApiModel):
    """``POST /v1/sessions/{id}`` (v0.1 fields, plus ``continueFrom``)."""

    agent: str
    agent_mode: str | None = None
    permission_mode: str | None = None
    model: str | None = None
    variant: str | None = None
    agent_version: str | None = None
    directory: str | None = None
    title: str | None = None
    mcp: dict[str, Any] | None = None
    skills: SkillsConfig | None = None
    continue_from: ContinueFrom | None = None


class CreateSessionResponse(ApiModel):
    healthy: bool = True
    native_session_id: str | None = None


class ForkSessionRequest(ApiModel):
    """``POST /v1/sessions/{id}/fork`` (ours): fork the session at ``at``."""

    #: The fork's id (default: ``<source>-fork-<8 hex digits>``, cut to the id's 128).
    session_id: Id | None = None
    #: The fork point: the fork holds events 1..at (default: every event stored now). Below 1
    #: or past the source's last event: 400.
    at: int | None = Field(None, ge=1)


class ForkedFrom(ApiModel):
    """``SessionInfo.forkedFrom``: where a fork came from and how it continued."""

    session_id: str
    #: The source's last event the fork copied.
    sequence: int
    #: True: the agent forked its own session (the fork point was the source's end, between
    #: turns, and the agent can fork); False: a fresh agent session, the conversation restored
    #: by replay before the first prompt; None: not continued yet (forked offline, never
    #: served since).
    native_resume: bool | None = None


class SessionInfo(ApiModel):
    """A session as ``GET /v1/sessions`` lists it: v0.1's fields plus ``status`` and
    ``lastSequence``. Times are Unix epoch milliseconds."""

    session_id: str
    agent: str
    agent_mode: str | None = None
    permission_mode: str | None = None
    model: str | None = None
    variant: str | None = None
    native_session_id: str | None = None
    ended: bool = False
    event_count: int = 0
    created_at: int
    updated_at: int
    directory: str | None = None
    title: str | None = None
    mcp: dict[str, Any] | None = None
    skills: dict[str, Any] | None = None
    #: Ours: the skills its ``skills`` sources gave it, linked into its directory.
    installed_skills: list[InstalledSkill] | None = None
    #: ``idle``, ``running``, ``awaiting_input``, ``ended``, or ``failed``: its stored stream
    #: is damaged (``error`` says how) and the server does not serve it.
    status: str
    last_sequence: int = 0
    #: Ours: why a ``failed`` session is not served.
    error: str | None = None
    #: Ours: set on a fork (``POST /v1/sessions/{id}/fork``, ``sandbox-agent fork``).
    forked_from: ForkedFrom | None = None


class SessionListResponse(ApiModel):
    sessions: list[SessionInfo]
    next_cursor: str | None = None


class MessageRequest(ApiModel):
    message: str
    attachments: list[Attachment] = Field(default_factory=list)
    #: Ours: refuse (409 ``turn_in_progress``) instead of queueing while a turn runs.
    if_idle: bool = False


class PromptQueuedResponse(ApiModel):
    """202 to a prompt sent while a turn runs: it waits at ``position`` (1 = next)."""

    queued: Literal[True] = True
    queue_id: str
    position: int


class QueuedPromptInfo(ApiModel):
    queue_id: str
    message: str
    attachments: list[Attachment] = Field(default_factory=list)
    #: The sequence of its ``prompt.queued`` event.
    sequence: int


class QueueResponse(ApiModel):
    """``GET /v1/sessions/{id}/queue``: the prompts waiting, in the order they start."""

    prompts: list[QueuedPromptInfo]


class EventsResponse(ApiModel):
    #: ``UniversalEvent`` JSON objects (snake_case).
    events: list[dict[str, Any]]
    has_more: bool


class PermissionReplyRequest(ApiModel):
    reply: Literal["once", "always", "reject"]


class QuestionReplyRequest(ApiModel):
    answers: list[list[str]]
