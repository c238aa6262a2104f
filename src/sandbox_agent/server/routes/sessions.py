"""``/v1/sessions``: list, create, get, delete, messages, cancel, terminate, state, transcript."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from sandbox_agent.replay import SessionState, render_transcript, state_at
from sandbox_agent.server.errors import invalid_request, session_not_found
from sandbox_agent.server.models import (
    CreateSessionRequest,
    CreateSessionResponse,
    MessageRequest,
    SessionInfo,
    SessionListResponse,
)
from sandbox_agent.server.responses import problems
from sandbox_agent.server.routes.deps import (
    Config,
    IncludeRaw,
    Manager,
    SessionId,
    Stopping,
    config_of,
    manager_of,
)
from sandbox_agent.server.sessions import SessionManager
from sandbox_agent.server.sse import TERMINAL_TYPES, event_stream, sse_response
from sandbox_agent.store import SessionRecord

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def session_info(manager: SessionManager, record: SessionRecord) -> SessionInfo:
    live = manager.loaded(record.id)
    if live is not None:
        status: str = live.state.status
    else:
        status = "ended" if record.status == "ended" else "idle"
    return SessionInfo(
        session_id=record.id,
        agent=record.agent,
        agent_mode=record.agent_mode,
        permission_mode=record.permission_mode,
        model=record.model,
        variant=record.variant,
        native_session_id=record.native_session_id,
        ended=record.status == "ended",
        event_count=record.event_count,
        created_at=_ms(record.created_at),
        updated_at=_ms(record.updated_at),
        directory=record.directory,
        title=record.title,
        mcp=record.init.get("mcp"),
        skills=record.init.get("skills"),
        status=status,
        last_sequence=record.last_sequence,
    )


@router.get("", response_model=SessionListResponse, response_model_exclude_none=True)
async def list_sessions(
    manager: Manager,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> SessionListResponse:
    """Sessions, newest first; pass ``nextCursor`` back as ``cursor`` for the next page (an
    empty ``cursor`` is the first page)."""
    page = await manager.store.list_sessions(limit=limit, cursor=cursor or None)
    return SessionListResponse(
        sessions=[session_info(manager, r) for r in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/{session_id}",
    response_model=CreateSessionResponse,
    response_model_exclude_none=True,
    responses=problems(404, 409),
)
async def create_session(
    session_id: SessionId, body: CreateSessionRequest, manager: Manager
) -> CreateSessionResponse:
    """Create a session (409 if the id is taken) and start its agent."""
    return await manager.create(session_id, body)


@router.get(
    "/{session_id}",
    response_model=SessionInfo,
    response_model_exclude_none=True,
    responses=problems(404),
)
async def get_session(session_id: SessionId, manager: Manager) -> SessionInfo:
    await manager.get(session_id)
    record = await manager.store.get_session(session_id)
    if record is None:
        raise session_not_found(session_id)
    return session_info(manager, record)


@router.delete("/{session_id}", status_code=204, responses=problems(404))
async def delete_session(session_id: SessionId, manager: Manager) -> Response:
    """Terminate the session if live, then delete it with its events."""
    await manager.delete(session_id)
    return Response(status_code=204)


def _check_message(body: MessageRequest, config: Config) -> None:
    if len(body.message) > config.max_message_chars:
        raise invalid_request(f"message longer than {config.max_message_chars} characters")
    if len(body.attachments) > config.max_attachments:
        raise invalid_request(f"more than {config.max_attachments} attachments")


@router.post("/{session_id}/messages", status_code=204, responses=problems(404, 409))
async def send_message(session_id: SessionId, body: MessageRequest, request: Request) -> Response:
    """Send a prompt: 204 once ``turn.started`` and the user item are stored; 409 while a turn
    runs; 400 once the session was terminated."""
    _check_message(body, config_of(request))
    live = await manager_of(request).get(session_id)
    await live.send_message(body.message, body.attachments)
    return Response(status_code=204)


@router.post(
    "/{session_id}/messages/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **problems(404, 409)},
)
async def send_message_stream(
    session_id: SessionId,
    body: MessageRequest,
    manager: Manager,
    config: Config,
    stopping: Stopping,
    include_raw: IncludeRaw,
) -> StreamingResponse:
    """Send a prompt and stream this turn's events until the first terminal one."""
    _check_message(body, config)
    live = await manager.get(session_id)
    before = await live.send_message(body.message, body.attachments)
    stream = event_stream(
        manager.store,
        session_id,
        before,
        include_raw=include_raw,
        ping_seconds=config.sse_ping_seconds,
        stop=stopping,
        until=lambda event: event.type in TERMINAL_TYPES,
    )
    return sse_response(stream)


@router.post("/{session_id}/cancel", status_code=204, responses=problems(404))
async def cancel_turn(session_id: SessionId, manager: Manager) -> Response:
    """Interrupt the running turn; it ends with ``reason: cancelled``."""
    await (await manager.get(session_id)).cancel()
    return Response(status_code=204)


@router.post("/{session_id}/terminate", status_code=204, responses=problems(404))
async def terminate_session(session_id: SessionId, manager: Manager) -> Response:
    """Stop the session's agent and record ``session.ended {terminated, daemon}``."""
    await (await manager.get(session_id)).terminate()
    return Response(status_code=204)


@router.get(
    "/{session_id}/state",
    response_model=None,
    responses={
        200: {"model": SessionState, "description": "The session state after sequence at"},
        **problems(404),
    },
)
async def session_state(
    session_id: SessionId,
    manager: Manager,
    at: Annotated[int | None, Query(ge=0, description="Sequence (default: latest).")] = None,
) -> dict[str, object]:
    """The replayed ``SessionState`` after sequence ``at``."""
    state = await _state_at(manager, session_id, at)
    return state.model_dump(mode="json")


@router.get(
    "/{session_id}/transcript",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/markdown": {}, "text/plain": {}, "application/json": {}}},
        **problems(404),
    },
)
async def session_transcript(
    session_id: SessionId,
    manager: Manager,
    format: Literal["markdown", "text", "json"] = "markdown",
) -> Response:
    """The session as Markdown, plain text or JSON."""
    state = await _state_at(manager, session_id, None)
    text = render_transcript(state, format)
    media = {"markdown": "text/markdown", "text": "text/plain", "json": "application/json"}
    return Response(text, media_type=f"{media[format]}; charset=utf-8")


async def _state_at(manager: SessionManager, session_id: str, at: int | None) -> SessionState:
    """The state after ``at``: the live session's own (the reducer fed with every append, so
    equal to a replay) when ``at`` is its latest, else replayed from the store."""
    live = await manager.get(session_id)
    state = await live.settled_state()
    if at is None or at == state.last_sequence:
        return state
    return await state_at(manager.store, session_id, at)
