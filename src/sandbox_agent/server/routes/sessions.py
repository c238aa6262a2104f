"""``/v1/sessions``: list, create, get, delete, messages and their queue, cancel, terminate,
state, transcript."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from sandbox_agent.api import (
    Attachment,
    CreateSessionRequest,
    CreateSessionResponse,
    ForkedFrom,
    ForkSessionRequest,
    MessageRequest,
    PromptQueuedResponse,
    QueuedPromptInfo,
    QueueResponse,
    SessionInfo,
    SessionListResponse,
)
from sandbox_agent.events import UniversalEvent
from sandbox_agent.replay import SessionState, render_transcript
from sandbox_agent.server.errors import invalid_request, session_not_found
from sandbox_agent.server.responses import problems
from sandbox_agent.server.routes.deps import (
    Config,
    Engine,
    IncludeRaw,
    RequestId,
    SessionId,
    Stopping,
    config_of,
    engine_of,
)
from sandbox_agent.server.sse import TERMINAL_TYPES, event_stream, sse_response
from sandbox_agent.sessions import SessionConfig, SessionEngine
from sandbox_agent.sessions.fork import fork_origin, new_fork_id
from sandbox_agent.store import SessionRecord

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def session_info(engine: SessionEngine, record: SessionRecord) -> SessionInfo:
    live = engine.loaded(record.id)
    failure = engine.failure(record.id)
    if live is not None:
        status: str = live.state.status
    elif failure is not None:
        status = "failed"
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
        installed_skills=record.init.get("installedSkills"),
        status=status,
        last_sequence=record.last_sequence,
        error=None if failure is None else str(failure),
        forked_from=_forked_from(record),
    )


def _forked_from(record: SessionRecord) -> ForkedFrom | None:
    origin = fork_origin(record)
    if origin is None:
        return None
    native = origin.get("native_resume")
    return ForkedFrom(
        session_id=str(origin.get("session_id")),
        sequence=int(origin["sequence"]),
        native_resume=native if isinstance(native, bool) else None,
    )


@router.get("", response_model=SessionListResponse, response_model_exclude_none=True)
async def list_sessions(
    engine: Engine,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> SessionListResponse:
    """Sessions, newest first; pass ``nextCursor`` back as ``cursor`` for the next page (an
    empty ``cursor`` is the first page)."""
    page = await engine.store.list_sessions(limit=limit, cursor=cursor or None)
    return SessionListResponse(
        sessions=[session_info(engine, r) for r in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/{session_id}",
    response_model=CreateSessionResponse,
    response_model_exclude_none=True,
    responses=problems(404, 409),
)
async def create_session(
    session_id: SessionId, body: CreateSessionRequest, engine: Engine
) -> CreateSessionResponse:
    """Create a session (409 if the id is taken) and start its agent."""
    live = await engine.create(session_id, session_config(body))
    adapter = live.adapter
    return CreateSessionResponse(
        healthy=True, native_session_id=adapter.native_session_id if adapter else None
    )


def session_config(body: CreateSessionRequest) -> SessionConfig:
    continued = body.continue_from
    return SessionConfig(
        agent=body.agent,
        agent_mode=body.agent_mode,
        permission_mode=body.permission_mode,
        model=body.model,
        variant=body.variant,
        agent_version=body.agent_version,
        directory=body.directory,
        title=body.title,
        mcp=body.mcp,
        skills=body.skills.model_dump(exclude_none=True) if body.skills is not None else None,
        continue_from=continued.model_dump(by_alias=True) if continued is not None else None,
    )


@router.get(
    "/{session_id}",
    response_model=SessionInfo,
    response_model_exclude_none=True,
    responses=problems(404),
)
async def get_session(session_id: SessionId, engine: Engine) -> SessionInfo:
    await engine.get(session_id)
    record = await engine.store.get_session(session_id)
    if record is None:
        raise session_not_found(session_id)
    return session_info(engine, record)


@router.post(
    "/{session_id}/fork",
    status_code=201,
    response_model=SessionInfo,
    response_model_exclude_none=True,
    responses=problems(400, 404, 409),
)
async def fork_session(
    session_id: SessionId, engine: Engine, body: ForkSessionRequest | None = None
) -> SessionInfo:
    """Fork the session: a new session (``sessionId``, default a fresh id) whose stream is a
    copy of this one's events 1..``at`` (default: all stored now, a running turn's included),
    and which continues at once with its own agent; ``forkedFrom.nativeResume`` says whether
    the agent forked its own session or the conversation is restored by replay. 404 for an
    unknown session, 409 for a taken id, 400 for ``at`` past the last event."""
    body = body or ForkSessionRequest()
    new_id = body.session_id or new_fork_id(session_id)
    live = await engine.fork(session_id, new_id, body.at)
    return session_info(engine, live.record)


@router.delete("/{session_id}", status_code=204, responses=problems(404))
async def delete_session(session_id: SessionId, engine: Engine) -> Response:
    """Terminate the session if live, then delete it with its events."""
    await engine.delete(session_id)
    return Response(status_code=204)


def _check_message(body: MessageRequest, config: Config) -> None:
    if len(body.message) > config.max_message_chars:
        raise invalid_request(f"message longer than {config.max_message_chars} characters")
    if len(body.attachments) > config.max_attachments:
        raise invalid_request(f"more than {config.max_attachments} attachments")


@router.post(
    "/{session_id}/messages",
    status_code=204,
    responses={
        202: {"model": PromptQueuedResponse, "description": "Queued behind the running turn"},
        **problems(404, 409),
    },
)
async def send_message(session_id: SessionId, body: MessageRequest, request: Request) -> Response:
    """Send a prompt: 204 once ``turn.started`` and the user item are stored. While a turn runs
    the prompt is recorded and queued (202); with ``ifIdle`` it is refused (409) instead. 400
    once the session was terminated."""
    _check_message(body, config_of(request))
    live = await engine_of(request).get(session_id)
    accepted = await live.send_message(body.message, body.attachments, if_idle=body.if_idle)
    if accepted.queue_id is None:
        return Response(status_code=204)
    queued = PromptQueuedResponse(queue_id=accepted.queue_id, position=accepted.position)
    return JSONResponse(queued.model_dump(by_alias=True), status_code=202)


@router.post(
    "/{session_id}/messages/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **problems(404, 409)},
)
async def send_message_stream(
    session_id: SessionId,
    body: MessageRequest,
    engine: Engine,
    config: Config,
    stopping: Stopping,
    include_raw: IncludeRaw,
) -> StreamingResponse:
    """Send a prompt and stream this turn's events until the first terminal one (for a queued
    prompt: from its ``prompt.queued``, through the turns before it, to its own turn's end)."""
    _check_message(body, config)
    live = await engine.get(session_id)
    accepted = await live.send_message(body.message, body.attachments, if_idle=body.if_idle)
    stream = event_stream(
        engine.store,
        session_id,
        accepted.before,
        include_raw=include_raw,
        ping_seconds=config.sse_ping_seconds,
        stop=stopping,
        until=_end_of_turn(accepted.queue_id),
    )
    return sse_response(stream)


def _end_of_turn(queue_id: str | None) -> Callable[[UniversalEvent], bool]:
    """Whether an event ends the stream of a prompt's turn; a queued prompt's turn begins at
    its ``prompt.dequeued {started}`` (any other reason ends its stream there)."""
    if queue_id is None:
        return lambda event: event.type in TERMINAL_TYPES
    started = False

    def until(event: UniversalEvent) -> bool:
        nonlocal started
        if event.type == "prompt.dequeued" and event.data.get("queue_id") == queue_id:
            started = event.data.get("reason") == "started"
            return not started
        return started and event.type in TERMINAL_TYPES

    return until


@router.get("/{session_id}/queue", response_model=QueueResponse, responses=problems(404))
async def queued_prompts(session_id: SessionId, engine: Engine) -> QueueResponse:
    """The prompts waiting for the running turn to end, in the order they start."""
    state = await (await engine.get(session_id)).settled_state()
    return QueueResponse(
        prompts=[
            QueuedPromptInfo(
                queue_id=prompt.queue_id,
                message=prompt.message,
                attachments=[Attachment.model_validate(a) for a in prompt.attachments],
                sequence=prompt.queued_sequence,
            )
            for prompt in state.queued
        ]
    )


@router.delete("/{session_id}/queue/{queue_id}", status_code=204, responses=problems(404))
async def cancel_queued_prompt(
    session_id: SessionId, queue_id: RequestId, engine: Engine
) -> Response:
    """Take a waiting prompt out of the queue (``prompt.dequeued {cancelled}``); 404
    ``queued_prompt_not_found`` when it is not waiting."""
    await (await engine.get(session_id)).cancel_queued(queue_id)
    return Response(status_code=204)


@router.post("/{session_id}/cancel", status_code=204, responses=problems(404))
async def cancel_turn(session_id: SessionId, engine: Engine) -> Response:
    """Interrupt the running turn (it ends with ``reason: cancelled``) and cancel the prompts
    queued behind it."""
    await (await engine.get(session_id)).cancel()
    return Response(status_code=204)


@router.post("/{session_id}/terminate", status_code=204, responses=problems(404))
async def terminate_session(session_id: SessionId, engine: Engine) -> Response:
    """Stop the session's agent and record ``session.ended {terminated, daemon}``."""
    await (await engine.get(session_id)).terminate()
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
    engine: Engine,
    at: Annotated[int | None, Query(ge=0, description="Sequence (default: latest).")] = None,
) -> Response:
    """The replayed ``SessionState`` after sequence ``at``."""
    state = await _state_at(engine, session_id, at)
    # Encoded in one pass: a dict for FastAPI's encoder would hold the state twice more.
    return Response(state.model_dump_json(), media_type="application/json")


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
    engine: Engine,
    format: Literal["markdown", "text", "json"] = "markdown",
) -> Response:
    """The session as Markdown, plain text or JSON."""
    state = await _state_at(engine, session_id, None)
    text = render_transcript(state, format)
    media = {"markdown": "text/markdown", "text": "text/plain", "json": "application/json"}
    return Response(text, media_type=f"{media[format]}; charset=utf-8")


async def _state_at(engine: SessionEngine, session_id: str, at: int | None) -> SessionState:
    """The whole state after ``at`` (default: every event committed so far), folded from the
    store: the live session keeps only its working state."""
    return await engine.state_at(session_id, at)
